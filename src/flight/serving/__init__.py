"""Serving: plain Python functions and pipeline configs as an HTTP service (``flight.App``).

The high layer is :class:`App` (``@app.endpoint``, ``configs=``, ``app.pipeline(name)``);
``app.asgi`` is the ASGI application underneath, the low layer. ``flight serve`` runs it.
"""

from flight.serving.app import App
from flight.serving.catalog import PipelineCatalog, PipelineEntry

__all__ = ["App", "PipelineCatalog", "PipelineEntry"]
