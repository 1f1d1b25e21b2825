"""Image Studio engine: everything that is not HTTP or UI."""

__version__ = "0.1.0"
