"""The job queue in PostgreSQL and the jobs that call Telegram."""
