"""PointGuard: a loyalty engine whose every point lives in a double-entry ledger."""

__version__ = "0.1.0"
