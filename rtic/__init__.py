"""rtic: real-time industrial classifications of firms from their website text."""

__version__ = "0.1.0"
