"""The launcher inside Python artifacts turns the launch contract into gunicorn options."""

from __future__ import annotations

import pytest

from sos.build._launcher import UVICORN_WORKER, gunicorn_options

WSGI = {"name": "svc", "interface": "wsgi", "app": "svc:app"}
ASGI = {"name": "svc", "interface": "asgi", "app": "svc:app"}


def test_defaults_serve_one_sync_worker_on_localhost_8000() -> None:
    options = gunicorn_options(WSGI, {})
    assert options["bind"] == ["127.0.0.1:8000"]
    assert (options["workers"], options["threads"], options["worker_class"]) == (1, 1, "sync")
    assert options["timeout"] == 30


def test_gunicorn_config_variables_are_honoured() -> None:
    env = {
        "PORT": "9001",
        "HOST": "0.0.0.0",
        "SOS_WORKER_COUNT": "3",
        "SOS_THREAD_COUNT": "8",
        "SOS_WORKER_CLASS": "",
        "SOS_TIMEOUT_SECONDS": "120",
    }
    options = gunicorn_options(WSGI, env)
    assert options["bind"] == ["0.0.0.0:9001"]
    assert (options["workers"], options["threads"]) == (3, 8)
    assert options["worker_class"] == "gthread"  # threads > 1 picks the threaded worker
    assert (options["timeout"], options["graceful_timeout"]) == (120, 30)


def test_ipv6_host_is_bracketed() -> None:
    assert gunicorn_options(WSGI, {"HOST": "::1", "PORT": "80"})["bind"] == ["[::1]:80"]


def test_asgi_apps_get_uvicorn_workers() -> None:
    assert gunicorn_options(ASGI, {})["worker_class"] == UVICORN_WORKER
    assert gunicorn_options(ASGI, {"SOS_WORKER_CLASS": "uvicorn"})["worker_class"] == UVICORN_WORKER


@pytest.mark.parametrize(
    ("config", "env", "message"),
    [
        (WSGI, {"PORT": "eighty"}, "PORT='eighty' is not a whole number"),
        (WSGI, {"SOS_WORKER_COUNT": "0"}, "SOS_WORKER_COUNT=0 is out of range"),
        (WSGI, {"SOS_WORKER_CLASS": "uvicorn"}, "serves ASGI apps; this app is WSGI"),
        (WSGI, {"SOS_WORKER_CLASS": "eventlet"}, "'eventlet' is unknown"),
        (ASGI, {"SOS_WORKER_CLASS": "gthread"}, "cannot serve this ASGI app"),
    ],
)
def test_bad_launch_settings_exit_2_with_a_message(
    config: dict[str, str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        gunicorn_options(config, env)
    assert info.value.code == 2
    assert message in capsys.readouterr().err
