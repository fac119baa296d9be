"""mascara-actors: the real-time reduction system of a MASCARA all-sky camera station."""

__version__ = "0.1.0"
