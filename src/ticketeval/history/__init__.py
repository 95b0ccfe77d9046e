"""What is kept of each trial: the history (SQLite or PostgreSQL), the spool, recording."""
