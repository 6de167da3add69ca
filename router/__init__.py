"""metrics-router: a fast metrics front door."""

__version__ = "0.1.0"
