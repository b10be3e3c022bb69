"""The operator registry: names, clashes, aliases and entry-point plug-ins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import flight.operators as fo
from flight.errors import OperatorNameClashError, UnknownOperatorError


def _define(name: str, module: str) -> type[fo.Operator]:
    def call(self: Any, df: pd.DataFrame, **ctx: Any) -> pd.Index:
        return df.index

    return type(name, (fo.FilterOperator,), {"__call__": call, "__module__": module})


def test_subclass_registers_under_its_class_name() -> None:
    cls = _define("Fresh", "pkg_a.ops")
    assert fo.get_operator("Fresh") is cls
    assert "Fresh" in fo.operator_names()


def test_name_clash_is_an_error_naming_both_classes() -> None:
    _define("Twin", "pkg_a.ops")
    with pytest.raises(OperatorNameClashError) as info:
        _define("Twin", "pkg_b.ops")
    assert "pkg_a.ops.Twin" in str(info.value) and "pkg_b.ops.Twin" in str(info.value)


def test_redefining_the_same_class_replaces_it() -> None:
    _define("Again", "notebook")
    second = _define("Again", "notebook")  # re-running a cell
    assert fo.get_operator("Again") is second


def test_register_adds_an_alias() -> None:
    @fo.register("popular_items")
    class PopularItems(fo.SourceOperator):
        async def __call__(self, **ctx: Any) -> fo.Source:
            return fo.Source([])

    assert fo.get_operator("popular_items") is PopularItems
    assert fo.get_operator("PopularItems") is PopularItems


def test_unknown_operator_suggests_close_names() -> None:
    with pytest.raises(UnknownOperatorError, match="did you mean 'Sort'"):
        fo.get_operator("Sortt")


def test_builtins_are_in_the_registry() -> None:
    for name in ("Hydrate", "Sort", "Head", "DiverseSample", "Match", "Threshold", "WeightedScore"):
        assert fo.get_operator(name).__name__ == name


def _install_plugin(site: Path, body: str, *, broken: bool = False) -> None:
    """A real installed distribution (dist-info with entry_points.txt) on a sys.path entry."""
    (site / "acme_ops.py").write_text(textwrap.dedent(body))
    dist = site / "acme_ops-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ops\nVersion: 1.0\n")
    target = "acme_missing" if broken else "acme_ops"
    (dist / "entry_points.txt").write_text(
        f"[flight.operators]\nacme = {target}\nacme_top = acme_ops:TopN\n"
    )


PLUGIN = """
    import flight.operators as fo

    class TopN(fo.FilterOperator):
        n: int = 3

        def __call__(self, df, **ctx):
            return df.index[: self.n]
"""


def _run(site: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_entry_point_plugin_operators_are_found_by_name(tmp_path: Path) -> None:
    _install_plugin(tmp_path, PLUGIN)
    proc = _run(
        tmp_path,
        """
        import flight.operators as fo
        cls = fo.get_operator("TopN")
        print(cls.__module__, fo.get_operator("acme_top") is cls)
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["acme_ops", "True"]


def test_broken_plugin_is_named_when_an_operator_is_missing(tmp_path: Path) -> None:
    _install_plugin(tmp_path, PLUGIN, broken=True)
    proc = _run(
        tmp_path,
        """
        import flight.operators as fo
        try:
            fo.get_operator("Nonexistent")
        except KeyError as exc:
            print(exc)
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Plugins that failed to load: acme = acme_missing (ModuleNotFoundError" in proc.stdout
