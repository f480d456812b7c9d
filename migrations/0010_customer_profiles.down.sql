DROP TABLE IF EXISTS customer_profiles;
