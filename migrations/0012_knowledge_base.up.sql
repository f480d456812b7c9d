-- 0012: the local knowledge base (operators/knowledge.py, infra/knowledge.py): passages imported by
-- `worktool kb import` from Markdown, CSV and JSONL files, searched with PostgreSQL full-text search.
-- Chinese has no spaces, so PostgreSQL's parser cannot find its words: the importer segments each passage
-- with rjieba (search mode) and stores the words as a tsvector literal (the title's words weighted A, the
-- tags' B, the text's D, with their positions); a query is segmented the same way and matched with @@,
-- ranked with ts_rank. One row per distinct content (content_hash): re-importing a file changes nothing.

CREATE TABLE kb_passages (
    passage_id    text PRIMARY KEY,          -- 'kb_' + the first 24 hex digits of content_hash
    content_hash  text NOT NULL UNIQUE,      -- sha256 of kind, title and text, whitespace collapsed
    kind          text NOT NULL CHECK (kind IN ('qa', 'article')),
    title         text NOT NULL,             -- the question, or the article's heading path
    body          text NOT NULL,             -- the answer, or the section's text
    tags          text[] NOT NULL DEFAULT '{}',
    source        text NOT NULL,             -- the imported file's name (or `--source`)
    source_line   integer NOT NULL,          -- where the passage starts in it
    segmenter     text NOT NULL,             -- what made search_vector, e.g. 'rjieba 0.2.2'
    search_vector tsvector NOT NULL,
    imported_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX kb_passages_search_idx ON kb_passages USING GIN (search_vector);
CREATE INDEX kb_passages_source_idx ON kb_passages (source);

-- The reply path in the dataflow reads passages; the console reads them by default (0006); the import
-- runs as the owner (DATABASE_URL).
GRANT SELECT ON kb_passages TO worktool_dataflow;
