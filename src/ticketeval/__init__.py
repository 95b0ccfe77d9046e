"""Score a time-to-close model on IT support tickets, every day."""

__version__ = "0.1.0"
