"""``from flight.pipelines import Pipeline``, as the design notes write it (the same class as
``flight.Pipeline``)."""

from flight.pipeline import Pipeline

__all__ = ["Pipeline"]
