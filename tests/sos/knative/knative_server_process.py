"""``sos server --backend knative`` as a subprocess, as a user starts it (against the
stand-in API server named by a kubeconfig file)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

ADMIN_TOKEN = "sos-admin-" + "x" * 32


async def start_sos_server(
    kubeconfig: Path, data_dir: Path, *flags: str, port: int = 0
) -> tuple[asyncio.subprocess.Process, str]:
    """``sos server --backend knative ...`` as a user starts it; returns it and its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOS_") and k != "KUBECONFIG"}
    env["SOS_KNATIVE_KUBECONFIG"] = str(kubeconfig)
    env["SOS_ADMIN_TOKEN"] = ADMIN_TOKEN
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from sos.cli import main; main()", "server",
        "--port", str(port), "--data-dir", str(data_dir), "--backend", "knative", *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    output = ""
    async with asyncio.timeout(60):
        while "Application startup complete" not in output:
            line = await process.stdout.readline()
            if not line:
                break
            output += line.decode()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", output)
    assert match and "backend: knative" in output, output
    return process, match[1]


async def stop_sos_server(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        await process.communicate()
