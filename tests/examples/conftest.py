"""The examples are tested as their users run them; MovieLens data comes from
``../shared/data/movielens-small`` (or ``$MOVIELENS_DIR``) and the tests skip without it."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MOVIELENS = REPO / "examples" / "movielens"
sys.path.insert(0, str(MOVIELENS))
sys.path.insert(0, str(REPO / "tests" / "flight" / "serving"))  # serving_helpers
