"""A small Flask service."""
