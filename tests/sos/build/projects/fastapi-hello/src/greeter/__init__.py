"""Greets people over HTTP."""

__version__ = "0.3.1"
