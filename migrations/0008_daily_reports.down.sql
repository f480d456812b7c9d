DROP TABLE IF EXISTS after_sales_daily_reports;
