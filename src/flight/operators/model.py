"""Scoring with a trained model: ``fo.ModelScore``.

Subclass it, say how to load the model directory and how to score a frame of candidates in
one vectorised call::

    class ALSScore(fo.ModelScore):
        def load(self, path: Path) -> Factors:
            return Factors.read(path)

        def score(self, model: Factors, df: pd.DataFrame, user_id: int, **ctx) -> np.ndarray:
            return model.items(df["movieId"]) @ model.user(user_id)

    # config: - ALSScore: {model: models/als, output: model_score, timeout: 0.2}

The model is loaded once per process (on first use, in a worker thread; see
:func:`flight.models.load_model`), and refused under ``flight eval`` when it learnt from
interactions the evaluation holds out (:func:`flight.models.check_trained_within`; that is
an error, never failed open). Scoring
runs in a worker thread with its own ``timeout``; when it fails or is too slow, the step
**fails open** by default: ``output`` keeps the values it had (from an earlier step; missing
when there were none) and a warning says why, in the log, the trace and
``result.warnings``. ``fail_open: false`` makes it an error instead. Like any operator, it
has a line in the log, a span, metrics and a row in the explorer's funnel.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import Field

from flight.errors import OperatorError
from flight.models import LoadedModel, check_trained_within, load_model
from flight.operators.base import TransformOperator, warn

__all__ = ["ModelScore"]


class ModelScore(TransformOperator, abstract=True):
    """Scores candidates with a trained model (subclass: ``load`` and ``score``)."""

    model: str
    output: str = "score"
    timeout: Annotated[float, Field(gt=0)] = 1.0
    fail_open: bool = True

    #: where relative ``model`` paths start (None: the working directory)
    models_dir: ClassVar[Path | None] = None

    def load(self, path: Path) -> Any:
        """Read the model from its directory (called once per process)."""
        raise NotImplementedError

    def score(self, model: Any, df: pd.DataFrame, **ctx: Any) -> Any:
        """One score per row of ``df`` (same order), in one vectorised call."""
        raise NotImplementedError

    def model_path(self) -> Path:
        path = Path(self.model)
        return path if path.is_absolute() or self.models_dir is None else self.models_dir / path

    def loaded(self) -> LoadedModel:
        """The model, loaded on first use (once per process)."""
        return load_model(self.model_path(), self.load)

    async def __call__(self, df: pd.DataFrame, **ctx: Any) -> dict[str, Any]:
        try:
            model = await asyncio.to_thread(self.loaded)
        except Exception as exc:
            return self._fallback(df, f"model {self.model!r} is unavailable: {exc}")
        # a model that saw held-out data is a wrong answer, not an outage: never fail open
        check_trained_within(model)
        if df.empty:
            return {self.output: np.empty(0, dtype=np.float64)}
        try:
            scores = await asyncio.wait_for(
                asyncio.to_thread(self.score, model.value, df, **ctx), timeout=self.timeout
            )
        except TimeoutError:
            return self._fallback(df, f"scoring took longer than its {self.timeout:g} s timeout")
        except Exception as exc:
            return self._fallback(df, f"scoring failed: {type(exc).__name__}: {exc}")
        values = np.asarray(scores, dtype=np.float64)
        if values.shape != (len(df),):
            return self._fallback(
                df, f"score() returned {values.shape} values for {len(df)} candidates"
            )
        return {self.output: values}

    def _fallback(self, df: pd.DataFrame, why: str) -> dict[str, Any]:
        if not self.fail_open:
            raise OperatorError(f"{self!r}: {why}", self)
        if self.output in df:
            warn(f"{why}; kept the previous {self.output!r} (fail-open)")
            return {self.output: df[self.output].to_numpy()}
        warn(f"{why}; {self.output!r} left empty (fail-open)")
        return {self.output: np.full(len(df), np.nan)}
