"""The examples are tested as their users run them; MovieLens data comes from
``../shared/data/movielens-small`` (or ``$MOVIELENS_DIR``) and the tests skip without it."""

from __future__ import annotations

import os

# The example app, as `flight serve --debug movielens_app:app` serves it (the explorer and
# ?debug=true are tested here): FLIGHT_DEBUG is read when the app is built, at import, and
# put back afterwards so that no other test runs with it.
_saved = os.environ.get("FLIGHT_DEBUG")
os.environ["FLIGHT_DEBUG"] = "1"
try:
    import movielens_app  # noqa: F401
finally:
    if _saved is None:
        del os.environ["FLIGHT_DEBUG"]
    else:
        os.environ["FLIGHT_DEBUG"] = _saved
