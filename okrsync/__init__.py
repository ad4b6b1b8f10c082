"""okr-sync core: config models, progress math, the CLI."""

__version__ = "0.1.0"
