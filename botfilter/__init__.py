"""botfilter: tells bot opens and clicks from people's and recomputes engagement metrics."""

__version__ = "0.1.0"
