"""What is kept of each trial: the history (SQLite or PostgreSQL) and the spool."""
