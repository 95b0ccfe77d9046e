"""The report: one self-contained HTML page of a trial, with its charts."""
