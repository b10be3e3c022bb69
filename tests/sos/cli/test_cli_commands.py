"""The ``sos`` CLI against a real server: output for people, --json for scripts, errors on
stderr, exit codes 0 / 1 (SOS error) / 2 (usage)."""

from __future__ import annotations

import dataclasses
import json
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sos_cli import cli_runner
from typer.testing import CliRunner, Result

from sos import Service
from sos.cli import _load_commands, app
from sos.runtime.base import ObservedService
from sos.runtime.fake import FakeBackend

if TYPE_CHECKING:
    from sos_server import RunningServer

_load_commands()

PY_DEPLOY = """
from sos import Artifact, Autoscaling, EnvVar, Resources, Revision, Service

service = Service(name="sfix-service", team="recs", description="similar items")
revision = Revision(
    artifact=Artifact(name="sfix_service", version="{version}"),
    env_vars=[EnvVar(id="LOG_LEVEL", value="info")],
    resources=Resources(memory="{memory}", cpu="1000m"),
    autoscaling=Autoscaling(min_scale=0, max_scale=5, target_concurrency=10),
)
"""

YAML_CANARY = """
service: {name: sfix-service, team: recs}
revision:
  artifact: {name: sfix_service, version: v2}
traffic:
  - {revision: latest, percent: 10, tag: canary}
  - {revision: 1, percent: 90}
"""


@pytest.fixture
def sos(server: RunningServer, tmp_path: Path) -> CliRunner:
    return cli_runner(server.url, server.admin_token, tmp_path)


def run(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env=env)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_deploy_python_file_then_again_is_idempotent(sos: CliRunner, tmp_path: Path) -> None:
    file = write(tmp_path, "deploy.py", PY_DEPLOY.format(version="v1", memory="2G"))
    first = run(sos, "deploy", str(file))
    assert first.exit_code == 0, first.output
    assert "revision 00001 created" in first.stdout
    assert "traffic: 00001=100" in first.stdout
    again = run(sos, "deploy", str(file), "--json")
    assert again.exit_code == 0
    result = json.loads(again.stdout)
    assert result["created"] is False and result["revision"]["id"] == "sfix-service-00001"
    forced = run(sos, "deploy", str(file), "--force", "--json")
    assert json.loads(forced.stdout)["revision"]["id"] == "sfix-service-00002"


def test_deploy_yaml_with_a_canary_route(sos: CliRunner, tmp_path: Path) -> None:
    run(sos, "deploy", str(write(tmp_path, "a.py", PY_DEPLOY.format(version="v1", memory="2G"))))
    result = run(sos, "deploy", str(write(tmp_path, "canary.yaml", YAML_CANARY)))
    assert result.exit_code == 0, result.output
    assert "traffic: 00002=10@canary 00001=90" in result.stdout
    shown = json.loads(run(sos, "traffic", "sfix-service", "--json").stdout)
    assert [(r["revision"], r["percent"], r.get("tag")) for r in shown["routes"]] == [
        ("sfix-service-00002", 10, "canary"),
        ("sfix-service-00001", 90, None),
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.py", PY_DEPLOY.format(version="v1", memory="2 GB"), "bad.py line 8"),
        (
            "bad2.py",
            PY_DEPLOY.format(version="v1", memory="2 GB"),
            "Resources: memory: '2 GB' is not",
        ),
        ("nosvc.py", "x = 1\n", "declares no Service"),
        ("bad.yaml", "service: {name: s, team: t}\ncolour: red\n", "unknown key 'colour'"),
        (
            "bad2.yaml",
            "service: {name: s, team: t}\nrevision: {artifact: {name: a, version: '1'},"
            " resources: {cpu: lots}}\n",
            "bad2.yaml: revision.resources.cpu",
        ),
        ("broken.yaml", "service: [\n", "broken.yaml line"),
        ("deploy.txt", "", "Python (.py) or YAML"),
    ],
)
def test_bad_deploy_files_name_the_file_and_field(
    sos: CliRunner, tmp_path: Path, name: str, text: str, message: str
) -> None:
    result = run(sos, "deploy", str(write(tmp_path, name, text)))
    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.startswith("error:")
    assert json.loads(run(sos, "services", "--json").stdout) == []  # nothing half-applied


def test_traffic_rollback_history_round_trip(sos: CliRunner, tmp_path: Path) -> None:
    file = write(tmp_path, "deploy.py", PY_DEPLOY.format(version="v1", memory="2G"))
    run(sos, "deploy", str(file))
    run(sos, "deploy", str(file), "--force")
    split = run(sos, "traffic", "sfix-service", "2=90", "00001=10@old")
    assert split.exit_code == 0, split.output
    assert "old" in split.stdout and "90%" in split.stdout
    rolled = run(sos, "rollback", "sfix-service")
    assert rolled.exit_code == 0
    assert "traffic is now 00001=100" in rolled.stdout
    history = json.loads(run(sos, "history", "sfix-service", "--json").stdout)
    assert history[0]["action"] == "traffic.rollback"
    assert history[0]["actor"] == "admin"
    assert "WHAT" in run(sos, "history", "sfix-service").stdout


def crash_loop(server: RunningServer, backend: FakeBackend, number: int) -> None:
    """Make revision ``number`` of sfix-service fail, and wait until its status says so."""
    backend.fail(f"sfix-service-{number:05d}", "CrashLoop", "the instance exited with code 1")
    with server.client() as client:
        deadline = time.monotonic() + 10
        while not client.get_revision("sfix-service", number).status.failed:
            assert time.monotonic() < deadline, "the failure never reached status"
            time.sleep(0.05)


def test_traffic_to_a_failed_revision_needs_force(
    sos: CliRunner, server: RunningServer, tmp_path: Path
) -> None:
    backend = server.state.backend
    assert isinstance(backend, FakeBackend)
    runner = sos
    file = write(tmp_path, "deploy.py", PY_DEPLOY.format(version="v1", memory="2G"))
    run(runner, "deploy", str(file))
    run(runner, "deploy", str(file), "--force")
    crash_loop(server, backend, 2)

    refused = run(runner, "traffic", "sfix-service", "latest=100")
    assert refused.exit_code == 1
    assert "revision sfix-service-00002 failed (CrashLoop" in refused.stderr
    assert "sos logs sfix-service --revision 2" in refused.stderr
    assert "00001" in run(runner, "traffic", "sfix-service").stdout  # traffic did not move

    forced = run(runner, "traffic", "sfix-service", "latest=100", "--force")
    assert forced.exit_code == 0, forced.output
    assert "00002" in forced.stdout and "100%" in forced.stdout


def test_traffic_shows_tag_urls_before_status_catches_up(
    sos: CliRunner, server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = server.state.backend
    assert isinstance(backend, FakeBackend)
    file = write(tmp_path, "deploy.py", PY_DEPLOY.format(version="v1", memory="2G"))
    run(sos, "deploy", str(file))
    run(sos, "deploy", str(file), "--force")
    observe = backend.observe

    async def no_tag_urls_yet(name: str) -> ObservedService | None:
        observed = await observe(name)
        return None if observed is None else dataclasses.replace(observed, tag_urls={})

    monkeypatch.setattr(backend, "observe", no_tag_urls_yet)  # status lags behind
    split = run(sos, "traffic", "sfix-service", "1=90", "2=10@canary")
    assert split.exit_code == 0, split.output
    assert "http://canary-sfix-service.sos.invalid" in split.stdout
    shown = json.loads(run(sos, "traffic", "sfix-service", "--json").stdout)
    assert [(r["tag"], r["url"]) for r in shown["routes"]] == [
        (None, None),
        ("canary", "http://canary-sfix-service.sos.invalid"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["2=90", "1=20"], "sum to 100, these sum to 110"),
        (["two=100"], "is not a revision of 'sfix-service'"),
        (["2:100"], "REVISION=PERCENT"),
    ],
)
def test_bad_traffic_arguments_are_usage_errors(
    sos: CliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    run(sos, "deploy", str(write(tmp_path, "d.py", PY_DEPLOY.format(version="v1", memory="2G"))))
    result = run(sos, "traffic", "sfix-service", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_lists_and_shows(sos: CliRunner, tmp_path: Path) -> None:
    run(sos, "deploy", str(write(tmp_path, "d.py", PY_DEPLOY.format(version="v1", memory="2G"))))
    services = run(sos, "services")
    assert "sfix-service" in services.stdout and "recs" in services.stdout
    assert json.loads(run(sos, "services", "--json").stdout)[0]["name"] == "sfix-service"
    shown = run(sos, "service", "show", "sfix-service")
    assert "similar items" in shown.stdout and "ready:            yes" in shown.stdout
    revisions = run(sos, "revisions", "sfix-service")
    assert "00001" in revisions.stdout and "sfix_service v1" in revisions.stdout
    revision = run(sos, "revision", "show", "sfix-service", "1")
    assert "memory 2G, cpu 1000m" in revision.stdout and "LOG_LEVEL=info" in revision.stdout
    missing = run(sos, "service", "show", "nope")
    assert missing.exit_code == 1 and "does not exist" in missing.stderr


def test_tokens_whoami_and_forbidden_writes(sos: CliRunner, server: RunningServer) -> None:
    created = run(sos, "token", "create", "--team", "ads", "--name", "ci-ads")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("sos_") and "shown only now" in created.stderr
    listed = run(sos, "token", "list", "--json")
    assert {t["name"] for t in json.loads(listed.stdout)} == {"admin", "ci-ads"}
    as_ads = {"SOS_TOKEN": secret}
    assert "ci-ads (writer, team ads)" in run(sos, "whoami", env=as_ads).stdout
    with server.client() as admin:
        from sos import Service

        admin.apply(Service(name="recs-svc", team="recs"))
    denied = run(sos, "service", "delete", "recs-svc", "--yes", env=as_ads)
    assert denied.exit_code == 1
    assert "belongs to team 'ads'" in denied.stderr
    assert run(sos, "token", "revoke", "ci-ads").exit_code == 0
    gone = run(sos, "whoami", env=as_ads)
    assert gone.exit_code == 1 and "does not know this token" in gone.stderr


def test_a_writer_token_without_a_team_is_one_line_not_a_traceback(sos: CliRunner) -> None:
    result = run(sos, "token", "create", "--role", "writer", "--name", "nt")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: a writer token needs a team: add --team NAME (team=...)"
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_login_saves_url_and_token_for_later_commands(
    sos: CliRunner, server: RunningServer
) -> None:
    no_env = {"SOS_URL": "", "SOS_TOKEN": ""}
    login = run(sos, "login", server.url, "--token", server.admin_token, env=no_env)
    assert login.exit_code == 0, login.output
    assert "logged in" in login.stdout
    assert "admin (admin)" in run(sos, "whoami", env=no_env).stdout
    bad = run(sos, "login", server.url, "--token", "wrong", env=no_env)
    assert bad.exit_code == 1


def test_unreachable_server_is_a_clear_error(sos: CliRunner) -> None:
    result = run(sos, "services", env={"SOS_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 1
    assert "cannot reach the SOS server at http://127.0.0.1:9" in result.stderr


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["server"], "Port to listen on; 0 picks a free one [env SOS_PORT; 8700]."),
        (["traffic"], "REVISION=PERCENT[@TAG] ...; none shows the current split."),
    ],
)
def test_help_shows_square_brackets_as_written(
    sos: CliRunner, command: list[str], shown: str
) -> None:
    result = run(sos, *command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    assert shown in text


def test_usage_errors_exit_2(sos: CliRunner) -> None:
    assert run(sos, "traffic").exit_code == 2
    assert run(sos, "no-such-command").exit_code == 2


def test_documented_example_files_deploy(sos: CliRunner) -> None:
    examples = Path(__file__).parents[3] / "docs" / "sos" / "examples"
    first = run(sos, "deploy", str(examples / "sfix-service.py"))
    assert first.exit_code == 0, first.output
    canary = run(sos, "deploy", str(examples / "sfix-service-canary.yaml"))
    assert canary.exit_code == 0, canary.output
    assert "traffic: 00002=10@canary 00001=90" in canary.stdout


def test_dry_run_says_what_would_change_and_changes_nothing(sos: CliRunner, tmp_path: Path) -> None:
    file = write(tmp_path, "deploy.py", PY_DEPLOY.format(version="v1", memory="2G"))
    before = run(sos, "deploy", str(file), "--dry-run")
    assert before.exit_code == 0, before.output
    assert before.stdout.splitlines() == [
        "would create service sfix-service for team recs",
        "would create revision 00001 from artifact sfix_service v1",
        "would give revision 00001 all traffic (the first revision)",
    ]
    assert json.loads(run(sos, "services", "--json").stdout) == []
    run(sos, "deploy", str(file))
    canary = run(sos, "deploy", str(write(tmp_path, "c.yaml", YAML_CANARY)), "--dry-run", "--json")
    assert json.loads(canary.stdout)["steps"] == [
        # the YAML sets no description: the service's stays as it is
        "keep service sfix-service as it is",
        "create revision 00002 from artifact sfix_service v2",
        "set traffic 00002=10@canary 00001=90 (now 00001=100: the file replaces it, a "
        "rollback included)",
    ]


def test_deploy_shows_each_change_and_moving_a_team_needs_a_flag(
    sos: CliRunner, server: RunningServer, tmp_path: Path
) -> None:
    file = write(tmp_path, "deploy.py", PY_DEPLOY.format(version="v1", memory="2G"))
    run(sos, "deploy", str(file))
    with server.client() as admin:
        admin.apply(Service(name="sfix-service", team="recs", description="Similar items"))
    moved = write(tmp_path, "moved.yaml", "service: {name: sfix-service, team: search}\n")
    refused = run(sos, "deploy", str(moved), "--dry-run")
    assert refused.exit_code == 1
    assert "belongs to team 'recs' and the file says team 'search'" in refused.output
    assert "--change-team" in refused.output
    assert run(sos, "deploy", str(moved)).exit_code == 1
    with server.client() as admin:
        kept = admin.get_service("sfix-service")
    assert (kept.team, kept.description) == ("recs", "Similar items")  # nothing changed
    dry = run(sos, "deploy", str(moved), "--dry-run", "--change-team")
    assert dry.stdout.splitlines() == ["would update service sfix-service: team recs -> search"]
    done = run(sos, "deploy", str(moved), "--change-team")
    assert done.exit_code == 0, done.output
    assert "applied: update service sfix-service: team recs -> search" in done.stdout
    with server.client() as admin:
        after = admin.get_service("sfix-service")
    assert (after.team, after.description) == ("search", "Similar items")


def test_the_hint_for_a_new_revision_fits_what_has_traffic(
    sos: CliRunner, server: RunningServer, tmp_path: Path
) -> None:
    """The hint once suggested `2=10` also when the only routed revision had failed, where
    what the user needs is all of the traffic on the fixed one: the server now gives it
    all of it (every request failed anyway), and says why in the history."""
    backend = server.state.backend
    assert isinstance(backend, FakeBackend)
    file = write(tmp_path, "deploy.py", PY_DEPLOY.format(version="v1", memory="2G"))
    run(sos, "deploy", str(file))
    healthy = run(sos, "deploy", str(file), "--force")
    assert "move some with `sos traffic sfix-service 2=10 1=90 ...`" in healthy.stdout
    crash_loop(server, backend, 1)
    fixed = run(sos, "deploy", str(file), "--force")
    assert fixed.exit_code == 0, fixed.output
    assert "traffic: 00003=100" in fixed.stdout
    assert "gets no traffic" not in fixed.stdout
    with server.client() as admin:
        change = admin.history("sfix-service", limit=1)[0]
        assert "every revision that had traffic failed" in change.summary
        back = admin.rollback("sfix-service")  # the failed split, if someone wants it back
    assert [(r.revision, r.percent) for r in back.routes] == [("sfix-service-00001", 100)]


def test_secrets_from_standard_input_never_echoed(sos: CliRunner, server: RunningServer) -> None:
    created = sos.invoke(app, ["secret", "set", "db-password", "--team", "recs"], input="s3cr3t\n")
    assert created.exit_code == 0, created.output
    assert "secret db-password of team recs created" in created.stdout
    assert "s3cr3t" not in created.output
    rotated = sos.invoke(app, ["secret", "set", "db-password", "--team", "recs"], input="n3w")
    assert "rotated (version 2)" in rotated.stdout
    listed = run(sos, "secret", "list", "--team", "recs")
    assert "db-password" in listed.stdout and "s3cr3t" not in listed.stdout
    as_json = json.loads(run(sos, "secret", "list", "--team", "recs", "--json").stdout)
    assert [(s["name"], s["version"]) for s in as_json] == [("db-password", 2)]
    assert server.state.secrets is not None
    # the value without the newline `echo` adds
    assert server.state.secrets.values("recs", ["db-password"]) == {"db-password": "n3w"}
    empty = sos.invoke(app, ["secret", "set", "other", "--team", "recs"], input="")
    assert empty.exit_code == 1 and "no value for secret 'other'" in empty.output
    deleted = run(sos, "secret", "delete", "db-password", "--team", "recs")
    assert deleted.exit_code == 0 and "deleted secret db-password" in deleted.stdout
    missing = run(sos, "secret", "delete", "db-password", "--team", "recs")
    assert missing.exit_code == 1 and "team 'recs' has no secret 'db-password'" in missing.output


def test_token_with_an_expiry_and_the_list_says_when_each_was_last_used(sos: CliRunner) -> None:
    created = run(sos, "token", "create", "--team", "ads", "--name", "ci-30d", "--expires", "30d")
    assert created.exit_code == 0, created.output
    assert "valid until" in created.stderr
    listed = run(sos, "token", "list")
    cells = [
        c.strip() for c in next(x for x in listed.stdout.splitlines() if "ci-30d" in x).split("│")
    ]
    assert cells[-3:-1] == ["in 29d 23h", "never"]  # expires in 30 days; not used yet
    admin = [
        c.strip() for c in next(x for x in listed.stdout.splitlines() if " admin " in x).split("│")
    ]
    assert admin[-3] == "never" and admin[-2] != "never"  # no expiry; used just now
    bad = run(sos, "token", "create", "--team", "ads", "--expires", "soon")
    assert bad.exit_code == 2 and "'soon' is not a duration" in bad.output


def test_service_config_set_show_unset_and_deploy_keeps_it(
    sos: CliRunner, server: RunningServer, tmp_path: Path
) -> None:
    file = write(tmp_path, "deploy.py", PY_DEPLOY.format(version="v1", memory="2G"))
    run(sos, "deploy", str(file))
    done = run(sos, "config", "set", "sfix-service", "REGION=eu", "FLAG=a=b")
    assert done.exit_code == 0, done.output
    assert "set FLAG, REGION; new revisions get it" in done.stdout
    shown = run(sos, "config", "show", "sfix-service")
    assert shown.stdout.splitlines() == ["REGION=eu", "FLAG=a=b"]
    # the same file again: it sets no service env, so the service keeps it; the new
    # revision gets it merged in, and a third run is a no-op (same merged spec)
    again = run(sos, "deploy", str(file))
    assert "revision 00002 created" in again.stdout, again.output
    with server.client() as admin:
        env = [(v.id, v.value) for v in admin.get_revision("sfix-service", 2).env_vars]
    assert ("REGION", "eu") in env and ("FLAG", "a=b") in env
    third = run(sos, "deploy", str(file))
    assert "already has this spec" in third.stdout, third.output
    removed = run(sos, "config", "unset", "sfix-service", "FLAG")
    assert "removed FLAG" in removed.stdout
    assert run(sos, "config", "show", "sfix-service").stdout.splitlines() == ["REGION=eu"]
    bad = run(sos, "config", "set", "sfix-service", "NOEQUALS")
    assert bad.exit_code == 2 and "write values as KEY=VALUE" in bad.output


def test_secret_commands_say_clearly_what_is_wrong(sos: CliRunner, server: RunningServer) -> None:
    bad = sos.invoke(app, ["secret", "set", "Bad Name", "--team", "recs"], input="x")
    assert bad.exit_code == 1
    assert "secret name 'Bad Name' must be lowercase letters, digits and '-'" in bad.output
    assert "pattern" not in bad.output
    writer = server.token("ci-recs", team="recs")
    own = sos.invoke(app, ["secret", "set", "k"], input="v", env={"SOS_TOKEN": writer})
    assert own.exit_code == 0 and "secret k of team recs created" in own.stdout  # its team
    other = sos.invoke(
        app, ["secret", "set", "k", "--team", "ads"], input="v", env={"SOS_TOKEN": writer}
    )
    assert "cannot change secret 'k', which belongs to team 'ads'" in other.output
    empty = run(sos, "secret", "list", "--team", "nosuch")
    assert "team nosuch has no secrets (check the name" in empty.stdout
    admin_no_team = sos.invoke(app, ["secret", "list"])
    assert admin_no_team.exit_code == 1 and "give --team" in admin_no_team.output
    anonymous = run(sos, "secret", "list", "--team", "recs", env={"SOS_TOKEN": ""})
    assert anonymous.output.count("SOS_TOKEN") == 1, anonymous.output  # said once


def test_config_files_on_the_service_reach_new_revisions(
    sos: CliRunner, server: RunningServer, tmp_path: Path
) -> None:
    file = write(tmp_path, "deploy.py", PY_DEPLOY.format(version="v1", memory="2G"))
    run(sos, "deploy", str(file))
    local = write(tmp_path, "app.yaml", "pool: 4\n")
    done = run(sos, "config", "file", "sfix-service", "conf/app.yaml", "--from", str(local))
    assert done.exit_code == 0 and "file conf/app.yaml set" in done.stdout, done.output
    assert "file conf/app.yaml (8 bytes)" in run(sos, "config", "show", "sfix-service").stdout
    again = run(sos, "deploy", str(file))
    assert "revision 00002 created" in again.stdout, again.output
    with server.client() as admin:
        files = admin.get_revision("sfix-service", 2).files
        assert [(f.path, f.content) for f in files] == [("conf/app.yaml", "pool: 4\n")]
        assert admin.get_revision("sfix-service", 1).files == []  # made before: unchanged
    bad = run(sos, "config", "file", "sfix-service", "../etc/passwd", "--from", str(local))
    assert bad.exit_code == 2 and "must be relative" in bad.output
    gone = run(sos, "config", "rm-file", "sfix-service", "conf/app.yaml")
    assert "file conf/app.yaml removed" in gone.stdout
    missing = run(sos, "config", "rm-file", "sfix-service", "conf/app.yaml")
    assert missing.exit_code == 1 and "has no config file 'conf/app.yaml'" in missing.output
