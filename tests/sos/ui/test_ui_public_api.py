"""Pins the public names of ``sos.ui`` (the router the server mounts and its assets)."""

from __future__ import annotations

import sos.ui


def test_ui_public_names_are_exactly_these() -> None:
    assert set(sos.ui.__all__) == {"Asset", "Assets", "load_assets", "router"}
    for name in sos.ui.__all__:
        assert hasattr(sos.ui, name), name


def test_ui_assets_are_shipped_in_the_package() -> None:
    assets = sos.ui.load_assets()
    assert {"app.js", "style.css", "favicon.svg"} <= set(assets.files)
    assert assets.build.encode() in assets.index.body  # index.html names the build
