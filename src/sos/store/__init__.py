"""The SQL store of SOS (SQLite by default, PostgreSQL by URL): the only code that speaks SQL."""

from sos.store.store import Clock, StaleWriteError, Store, hash_secret, normalize_database_url

__all__ = ["Clock", "StaleWriteError", "Store", "hash_secret", "normalize_database_url"]
