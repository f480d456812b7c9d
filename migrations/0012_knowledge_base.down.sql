DROP TABLE kb_passages;
