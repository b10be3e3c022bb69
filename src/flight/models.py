"""Trained models as files: saved with their version and digest, loaded once per process,
and checked against the interactions the pipeline may see.

A model is a directory: the payload files the trainer wrote, and ``model.json``::

    {"name": "als", "version": "2026-12-04T01:00:00Z-3f2a9c1b", "library": "implicit 0.7.3",
     "files": {"factors.npz": "<sha256>"}, "digest": "<sha256 of the files' digests>",
     "trained_on": {"dataset": "ratings", "rows": 99530, "keys": "trained_on.npy"}, ...}

:func:`save_model` writes it; :func:`load_model` reads it once per process (verifying every
file's digest) and returns a :class:`LoadedModel`. ``trained_on`` names the interaction data
set (:mod:`flight.data`) the model learnt from, with a hash of each (user, item) pair it saw:
:func:`check_trained_within` refuses a model that saw pairs the current view does not hold,
which is what ``flight eval`` needs (a model trained on everything would see the held-out
interactions and look better than it is).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flight import data
from flight.errors import FlightError

__all__ = [
    "LoadedModel",
    "ModelError",
    "check_trained_within",
    "interaction_keys",
    "load_model",
    "save_model",
]

META = "model.json"


class ModelError(FlightError):
    """A model file is missing, corrupt, or was trained on data the pipeline may not see."""


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model as loaded: what the loader returned, and ``model.json``."""

    path: Path
    value: Any
    meta: Mapping[str, Any]

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "unknown"))

    @property
    def digest(self) -> str:
        return str(self.meta.get("digest", ""))


def interaction_keys(frame: pd.DataFrame, user: str, item: str) -> np.ndarray[Any, Any]:
    """One 64-bit hash per (user, item) row, for :func:`check_trained_within`."""
    hashed = pd.util.hash_pandas_object(frame[[user, item]], index=False)
    return np.asarray(hashed.to_numpy(), dtype=np.uint64)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(
    directory: str | Path,
    *,
    name: str,
    write: Callable[[Path], None],
    library: str,
    params: Mapping[str, Any] | None = None,
    trained_on: tuple[str, pd.DataFrame, str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a model directory: ``write(directory)`` writes the payload files, then
    ``model.json`` records their digests, a version, the library and, with ``trained_on``
    (data set name, the training frame, its user and item columns), what it learnt from."""
    where = Path(directory)
    where.mkdir(parents=True, exist_ok=True)
    write(where)
    meta: dict[str, Any] = {"name": name, "library": library, "params": dict(params or {})}
    if trained_on is not None:
        dataset, frame, user, item = trained_on
        np.save(where / "trained_on.npy", np.sort(interaction_keys(frame, user, item)))
        meta["trained_on"] = {
            "dataset": dataset,
            "rows": len(frame),
            "user": user,
            "item": item,
            "keys": "trained_on.npy",
        }
    files = {p.name: _sha256(p) for p in sorted(where.iterdir()) if p.is_file() and p.name != META}
    digest = hashlib.sha256("".join(f"{n}:{d}\n" for n, d in files.items()).encode()).hexdigest()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    meta.update(files=files, digest=digest, version=f"{stamp}-{digest[:8]}", **(extra or {}))
    (where / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


_lock = threading.Lock()
_loaded: dict[tuple[Path, str], LoadedModel] = {}


def load_model(directory: str | Path, loader: Callable[[Path], Any]) -> LoadedModel:
    """The model in ``directory``, loaded with ``loader(directory)`` once per process (and
    again only if its ``model.json`` changes); every file's digest is checked first."""
    where = Path(directory).resolve()
    meta_path = where / META
    if not meta_path.is_file():
        raise ModelError(
            f"no model at {where} (no {META}); train it first and point the operator at its "
            "directory"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{meta_path}: cannot read it: {exc}") from None
    key = (where, str(meta.get("digest", "")))
    with _lock:
        found = _loaded.get(key)
        if found is not None:
            return found
        for name, expected in dict(meta.get("files", {})).items():
            path = where / name
            if not path.is_file() or _sha256(path) != expected:
                raise ModelError(
                    f"model file {path} is missing or changed since it was saved (its digest "
                    f"does not match {META}); retrain or restore the model"
                )
        loaded = LoadedModel(where, loader(where), meta)
        _loaded[key] = loaded
        return loaded


def check_trained_within(model: LoadedModel) -> None:
    """Refuse a model that learnt from interactions the current view of its data set lacks
    (under ``flight eval``: held-out ones). No-op for a model without ``trained_on``."""
    trained = model.meta.get("trained_on")
    if not isinstance(trained, Mapping):
        return
    dataset, user, item = str(trained["dataset"]), str(trained["user"]), str(trained["item"])
    if dataset not in data.interactions_names():
        return  # the pipeline's data set is not registered here: nothing to compare with
    unseen = data.derived(dataset, _unseen_counter(model, user, item, str(trained["keys"])))
    if unseen:
        raise ModelError(
            f"model {model.path.name} (version {model.version}) was trained on {unseen} "
            f"{dataset!r} interactions the pipeline cannot see now (under flight eval: held-out "
            f"ones), so its figures would be inflated; train it on the same training split "
            f"(the same --holdout) and evaluate again"
        )


_COUNTERS: dict[tuple[Path, str], Callable[[pd.DataFrame], int]] = {}


def _unseen_counter(
    model: LoadedModel, user: str, item: str, keys: str
) -> Callable[[pd.DataFrame], int]:
    """One function per model, so :func:`flight.derived` checks it once per data view."""

    def count(frame: pd.DataFrame) -> int:
        visible = interaction_keys(frame, user, item)
        return int((~np.isin(_trained_keys(model, keys), visible)).sum())

    with _lock:
        return _COUNTERS.setdefault((model.path, model.digest), count)


_trained: dict[tuple[Path, str, str], np.ndarray[Any, Any]] = {}


def _trained_keys(model: LoadedModel, name: str) -> np.ndarray[Any, Any]:
    key = (model.path, model.digest, name)
    with _lock:
        if key not in _trained:
            _trained[key] = np.load(model.path / name)
        return _trained[key]
