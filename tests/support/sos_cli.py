"""The `sos` CLI in-process (typer's CliRunner) against a test server, as a user's shell
would have it: the server's URL and a token in the environment, a config file of its own,
a wide terminal (tables are not wrapped)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner


def cli_runner(url: str, token: str, tmp_path: Path, **env: str | None) -> CliRunner:
    """A CliRunner for ``url`` with ``token``; ``env`` adds (or, with None, unsets)
    variables."""
    return CliRunner(
        env={
            "SOS_URL": url,
            "SOS_TOKEN": token,
            "SOS_CONFIG": str(tmp_path / "config.json"),
            "COLUMNS": "200",
            **env,
        }
    )
