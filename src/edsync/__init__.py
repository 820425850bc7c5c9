"""edsync: mirror education change feeds into SQL."""

__version__ = "0.1.0"
