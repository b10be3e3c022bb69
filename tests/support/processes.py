"""Stopping a server started as a subprocess the way a user would."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def interrupt(process: subprocess.Popen[Any], seconds: float, *, group: bool = False) -> None:
    """Ctrl-C (to the process's whole group with ``group``), as a user would; killed when it
    has not exited after ``seconds``."""
    if process.poll() is not None:
        return

    def send(sig: int) -> None:
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)

    send(signal.SIGINT)
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()
