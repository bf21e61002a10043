"""tuibox: containers you can see — an engine of its own and a terminal dashboard."""

__version__ = "0.1.0"
