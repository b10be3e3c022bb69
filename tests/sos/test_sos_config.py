"""How the client finds its server and token: arguments, env, `sos login` file, local default."""

from __future__ import annotations

from pathlib import Path

from sos.config import ServerSettings, load_client_config, save_client_config


def test_arguments_beat_env_which_beats_the_config_file(tmp_path: Path) -> None:
    env = {"SOS_CONFIG": str(tmp_path / "c.json")}
    save_client_config("http://file:1", "file-token", env)
    assert load_client_config(environ=env).token == "file-token"
    env |= {"SOS_URL": "http://env:2", "SOS_TOKEN": "env-token"}
    assert (load_client_config(environ=env).url, load_client_config(environ=env).token) == (
        "http://env:2",
        "env-token",
    )
    explicit = load_client_config("http://arg:3/", "arg-token", environ=env)
    assert (explicit.url, explicit.token) == ("http://arg:3", "arg-token")


def test_login_file_is_private_and_its_token_only_goes_to_its_url(tmp_path: Path) -> None:
    env = {"SOS_CONFIG": str(tmp_path / "c.json")}
    path = save_client_config("http://file:1", "file-token", env)
    assert path.stat().st_mode & 0o777 == 0o600
    elsewhere = load_client_config("http://other:9", environ=env)
    assert elsewhere.token is None


def test_local_default_uses_the_local_servers_admin_token(tmp_path: Path) -> None:
    env = {"SOS_CONFIG": str(tmp_path / "none.json"), "SOS_DATA_DIR": str(tmp_path)}
    (tmp_path / "admin-token").write_text("local-admin\n")
    config = load_client_config(environ=env)
    assert (config.url, config.token) == ("http://127.0.0.1:8700", "local-admin")


def test_local_default_follows_the_servers_sos_port_and_data_dir(tmp_path: Path) -> None:
    """`SOS_PORT=8765 SOS_DATA_DIR=d sos server` and `sos services` in the same environment
    find each other: the port and the admin token the server wrote."""
    env = {
        "SOS_CONFIG": str(tmp_path / "none.json"),
        "SOS_DATA_DIR": str(tmp_path),
        "SOS_PORT": "8765",
    }
    (tmp_path / "admin-token").write_text("local-admin\n")
    config = load_client_config(environ=env)
    assert (config.url, config.token) == ("http://127.0.0.1:8765", "local-admin")
    assert "SOS_PORT" in config.source
    # SOS_PORT=0 (a free port: only the server knows which) falls back to the default
    assert load_client_config(environ={**env, "SOS_PORT": "0"}).url == "http://127.0.0.1:8700"
    # the admin token never goes to another address
    other = load_client_config(environ={**env, "SOS_URL": "http://127.0.0.1:9999"})
    assert other.token is None


def test_server_settings_from_env(tmp_path: Path) -> None:
    settings = ServerSettings.from_env(
        {"SOS_PORT": "9000", "SOS_DATA_DIR": str(tmp_path), "SOS_BACKEND": "fake"}
    )
    assert (settings.port, settings.data_dir, settings.backend) == (9000, tmp_path, "fake")
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'sos.db'}"


def test_a_url_without_a_scheme_is_http(tmp_path: Path) -> None:
    env = {"SOS_CONFIG": str(tmp_path / "none.json"), "SOS_URL": "127.0.0.1:8765/"}
    assert load_client_config(environ=env).url == "http://127.0.0.1:8765"
    # the local server's admin token goes to it however its address is written
    (tmp_path / "admin-token").write_text("local-admin\n")
    local = {**env, "SOS_DATA_DIR": str(tmp_path), "SOS_URL": "127.0.0.1:8700"}
    assert load_client_config(environ=local).token == "local-admin"
    assert load_client_config("https://sos.example.com", environ=env).url == (
        "https://sos.example.com"
    )
