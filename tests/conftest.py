"""Fixtures shared by every test folder.

- ``browser``: headless Chromium (``tests/support/headless_browser.py``), one per test
  module. Tests marked ``browser`` are skipped, with the reason, on a machine without
  Chromium.
- every session ends by stopping the HAProxy processes of SOS routers it started and left
  behind (a killed ``sos server`` leaves its HAProxy serving, by design), and says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from headless_browser import launch, missing
from playwright.sync_api import Browser, sync_playwright

from sos.runtime.local import procs


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


#: every process this test session starts inherits it: how its leftovers are recognised
SESSION_MARKER = f"SOS_TEST_SESSION={os.getpid()}-{time.time_ns()}"


def _sos_haproxies() -> set[int]:
    """Live HAProxy processes of SOS routers started by this test session (they carry its
    marker in their environment), zombies left out."""
    name, value = SESSION_MARKER.split("=")
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        pid = int(entry)
        haproxy = os.path.basename(argv[0]) == b"haproxy"
        if haproxy and procs.environ(pid).get(name) == value and procs.alive(pid):
            found.add(pid)
    return found


@pytest.fixture(scope="session", autouse=True)
def _no_haproxy_left_behind() -> Iterator[None]:
    name, value = SESSION_MARKER.split("=")
    os.environ[name] = value
    yield
    left = _sos_haproxies()
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        warnings.warn(f"stopped {len(left)} HAProxy process(es) left by the tests", stacklevel=1)
