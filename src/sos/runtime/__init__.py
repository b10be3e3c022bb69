"""Backends that run revisions: the seam is ``sos.runtime.base.Backend``."""
