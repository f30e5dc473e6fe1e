"""`flmctl` (and `flame list/view/...`) as a user runs it: real entry points against a real local cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import flame
from flame.testing import LocalCluster
from tests.integration.conftest import free_port, wait_for

BIN = Path(sys.executable).parent
_CLUSTER = "the cluster's endpoint"
Result = subprocess.CompletedProcess[str]


class Cli:
    """``cli("flmctl", "list", "-s")`` runs the installed script (``flame``: ``python -m flame``)
    with ``--endpoint`` of the test cluster; ``cli.many(...)`` runs independent commands at once."""

    def __init__(self, endpoint: str, home: Path) -> None:
        self.endpoint = endpoint
        self.home = home

    def __call__(self, program: str, *argv: str, endpoint: str | None = _CLUSTER, **env: str) -> Result:
        command = [sys.executable, "-m", "flame"] if program == "flame" else [str(BIN / program)]
        endpoint = self.endpoint if endpoint == _CLUSTER else endpoint
        flags = ["--endpoint", endpoint] if endpoint else []
        environ = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
        environ.update({"HOME": str(self.home), **env})  # no ~/.flame/flame.yaml of the user's
        return subprocess.run([*command, *argv, *flags], capture_output=True, text=True, env=environ, timeout=60)

    def many(self, *commands: Sequence[str | dict[str, str]], endpoint: str | None = _CLUSTER) -> list[Result]:
        """Each command is ``(program, *argv)``, optionally ending with a dict of environment variables."""

        def run(command: Sequence[str | dict[str, str]]) -> Result:
            env = command[-1] if isinstance(command[-1], dict) else {}
            argv = [str(part) for part in command if not isinstance(part, dict)]
            return self(*argv, endpoint=endpoint, **env)

        with ThreadPoolExecutor(len(commands)) as pool:
            return list(pool.map(run, commands))


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(executors=2) as local:
        yield local


@pytest.fixture(scope="module")
def cli(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(cluster.endpoint, tmp_path_factory.mktemp("home"))


def ok(result: Result) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def failed(result: Result, code: int = 1) -> str:
    """The one-line (exit 1) or usage (exit 2) message of a failed command."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    if code == 1:
        assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.strip().split("\n")]


def test_list_every_kind_as_a_table_and_as_json(cli: Cli) -> None:
    apps, nodes, executors, sessions, apps_json, nodes_json, executors_json = cli.many(
        ("flmctl", "list", "-a"),
        ("flmctl", "list", "-n"),
        ("flmctl", "list", "-e"),
        ("flame", "list", "-s"),
        ("flmctl", "list", "-a", "-o", "json"),
        ("flame", "list", "--nodes", "--output", "json"),
        ("flmctl", "list", "-e", "-o", "json"),
    )
    assert rows(ok(apps))[0] == ["Name", "State", "Shim", "Labels", "Created", "Command"]
    listed = {row[0]: row for row in rows(ok(apps))[1:]}
    assert sorted(listed) == ["flmexec", "flmfunc", "flmping", "flmrun"]
    assert listed["flmping"][:4] == ["flmping", "Enabled", "Host", "-"]
    assert rows(ok(nodes))[0][:4] == ["Name", "State", "CPU", "Memory"] and rows(ok(nodes))[1][1] == "Ready"
    assert rows(ok(executors))[0] == ["ID", "State", "Session", "Node", "Resources"]
    assert rows(ok(sessions))[0] == [
        *("ID", "State", "App", "Resources", "Priority", "Pending", "Running", "Succeed", "Failed", "Created")
    ]
    app = {app["name"]: app for app in json.loads(ok(apps_json))}["flmping"]
    assert app["arguments"] == ["-m", "flame.apps.flmping"]
    [node] = json.loads(ok(nodes_json))
    assert node["state"] == "Ready" and node["capacity"]["cpu"] >= 1 and node["last_heartbeat_time"].endswith("Z")
    assert isinstance(json.loads(ok(executors_json)), list)


def test_create_view_and_close_a_session(cli: Cli) -> None:
    created = json.loads(ok(cli("flmctl", "create", "-a", "flmping", "-P", "3", "-r", "cpu=1,mem=1g", "-o", "json")))
    session_id = created["id"]
    assert session_id.startswith("flmping-") and created["state"] == "Open"
    assert created["priority"] == 3 and created["resreq"] == {"cpu": 1, "memory": 1024**3, "gpu": 0}

    listed, viewed = cli.many(("flmctl", "list", "-s"), ("flmctl", "view", "-s", session_id))
    row = next(r for r in rows(ok(listed)) if r[0] == session_id)
    assert row[1:5] == ["Open", "flmping", "cpu=1,mem=1g", "3"]
    details = ok(viewed)
    assert "State:       Open" in details and "Priority:    3" in details and "Events:      <none>" in details

    assert ok(cli("flmctl", "close", "-s", session_id)) == f"Session <{session_id}> was closed.\n"
    closed, another = cli.many(("flame", "view", "-s", session_id, "-o", "json"), ("flame", "create", "-a", "flmping"))
    assert json.loads(ok(closed))["state"] == "Closed"
    assert ok(another).startswith("Session <flmping-")


def test_view_a_task_with_its_events_and_output_size(cli: Cli) -> None:
    report = json.loads(ok(cli("flmping", "-t", "3", "-o", "json")))
    session_id = report["session"]
    table, as_json = cli.many(
        ("flmctl", "view", "-s", session_id, "-t", "2"), ("flmctl", "view", "-s", session_id, "-t", "2", "-o", "json")
    )
    details, task = ok(table), json.loads(ok(as_json))
    assert "State:       Succeed" in details and "Application: flmping" in details
    assert "0 (Pending)  task created" in details and "1 (Running)" in details and "2 (Succeed)" in details
    assert task["output_size"] == len(task["output"].encode()) > 0
    assert f"Output Size: {task['output_size']} B" in details
    assert json.loads(task["output"])["task"] == "2"
    assert [e["code"] for e in task["events"]] == [0, 1, 2]


def test_a_sessions_events_show_why_it_cannot_run(cli: Cli, cluster: LocalCluster, tmp_path: Path) -> None:
    manifest = tmp_path / "broken.yaml"
    manifest.write_text("metadata: {name: broken}\nspec: {command: /bin/false}\n")
    ok(cli("flmctl", "register", "-f", str(manifest)))
    with flame.connect(cluster.endpoint) as conn:
        session = conn.create_session("broken")
        session.create_task(b"x")  # created on the cluster before we disconnect
        session_id = session.id
        wait_for(lambda: conn.get_session(session_id).failed == 1)
    session_view, task_view = cli.many(
        ("flmctl", "view", "-s", session_id), ("flmctl", "view", "-s", session_id, "-t", "1")
    )
    details = ok(session_view)
    assert "1001 (BindFailed)" in details and "service exited with code 1" in details
    assert "1002 (BindGivenUp)" in details
    task = ok(task_view)
    assert "State:       Failed" in task and "3 (Failed)" in task
    ok(cli("flmctl", "close", "-s", session_id))


APPS = """\
metadata:
  name: cli-echo
spec:
  description: first version
  command: /bin/echo
  arguments: [hello, 42]
  environments: {GREETING: hi}
  max_instances: 4
  delay_release: 30
---
metadata:
  name: cli-legacy
spec:
  command: /bin/true
  environments:
    - {name: A, value: "1"}
"""


def test_register_update_and_unregister_applications(cli: Cli, tmp_path: Path) -> None:
    manifest = tmp_path / "apps.yaml"
    manifest.write_text(APPS)
    assert ok(cli("flmctl", "register", "-f", str(manifest))) == (
        "Application <cli-echo> was registered.\nApplication <cli-legacy> was registered.\n"
    )
    echo, legacy, again = cli.many(
        ("flmctl", "view", "-a", "cli-echo"),
        ("flmctl", "view", "-a", "cli-legacy", "-o", "json"),
        ("flmctl", "register", "-f", str(manifest)),
    )
    details = ok(echo)
    assert "Description:   first version" in details and "GREETING=hi" in details and "Delay Release: 30 s" in details
    assert json.loads(ok(legacy))["environments"] == {"A": "1"}
    message = failed(again)
    assert message.startswith(f"flmctl: {manifest}: document 1 (cli-echo): ") and "already registered" in message

    manifest.write_text(APPS.replace("first version", "second version"))
    ok(cli("flame", "update", "-f", str(manifest)))
    assert "Description:   second version" in ok(cli("flmctl", "view", "-a", "cli-echo"))

    removed = cli.many(("flmctl", "unregister", "-a", "cli-echo"), ("flmctl", "unregister", "-a", "cli-legacy"))
    assert [ok(r) for r in removed] == [f"Application <{n}> was unregistered.\n" for n in ("cli-echo", "cli-legacy")]
    listed, again = cli.many(("flmctl", "list", "-a"), ("flmctl", "unregister", "-a", "cli-echo"))
    assert "cli-echo" not in ok(listed)
    assert failed(again).startswith("flmctl: ")


def test_a_bad_manifest_registers_nothing_and_names_the_document(cli: Cli, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        textwrap.dedent("""\
        metadata: {name: cli-good}
        spec: {command: /bin/true}
        ---
        metadata: {name: cli-bad}
        spec: {command: /bin/true, max_instances: many}
        """)
    )
    message = failed(cli("flmctl", "register", "-f", str(manifest)))
    assert message == (
        f"flmctl: {manifest}: document 2: spec.max_instances: expected a whole number from 0 to 4294967295, "
        "got a string ('many')\n"
    )
    assert "cli-good" not in ok(cli("flmctl", "list", "-a"))


def test_missing_objects_and_bad_flags_are_short_errors(cli: Cli) -> None:
    session, app, node, create, close, no_kind, task_alone = cli.many(
        ("flmctl", "view", "-s", "nope"),
        ("flmctl", "view", "-a", "nope"),
        ("flmctl", "view", "-n", "nope"),
        ("flmctl", "create", "-a", "nope"),
        ("flame", "close", "-s", "nope"),
        ("flmctl", "list"),
        ("flame", "view", "-a", "flmping", "-t", "1"),
    )
    assert "session <nope> not found" in failed(session)
    assert failed(app) == "flmctl: application 'nope' not found; `flmctl list -a` shows the registered ones\n"
    assert failed(node).startswith("flmctl: node 'nope' not found; the cluster's nodes:")
    assert "application <nope> not found" in failed(create)
    assert failed(close).startswith("flame: ")

    message = failed(no_kind, code=2)  # more bad flags: tests/unit/test_cli_parsers.py
    assert "one of the arguments -a/--application" in message and "usage: flmctl list" in message
    assert "-t/--task needs -s/--session" in failed(task_alone, code=2)


def test_an_unreachable_cluster_gets_advice(cli: Cli) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    commands = (("flmctl", "list", "-s"), ("flmping", "-t", "1"))
    for argv, result in zip(commands, cli.many(*commands, endpoint=endpoint), strict=True):
        message = failed(result)
        assert message.startswith(f"{argv[0]}: cannot reach the Flame cluster at {endpoint}")
        assert "`flame up`" in message


def test_the_cluster_comes_from_the_config_or_the_environment(cli: Cli, cluster: LocalCluster, tmp_path: Path) -> None:
    config = tmp_path / "flame.yaml"
    config.write_text(
        "current-context: local\n"
        "contexts:\n"
        "  - name: elsewhere\n"
        "    cluster: {endpoint: 'http://127.0.0.1:1'}\n"
        "  - name: local\n"
        f"    cluster: {{endpoint: '{cluster.endpoint}'}}\n"
    )
    home = tmp_path / "home"
    (home / ".flame").mkdir(parents=True)
    (home / ".flame" / "flame.yaml").write_text(config.read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text("current-context: nope\ncontexts: []\n")
    by_flag, by_env, by_home, bad_file = cli.many(
        ("flmctl", "--config", str(config), "list", "-a"),
        ("flmctl", "list", "-a", {"FLAME_ENDPOINT": cluster.endpoint}),
        ("flame", "list", "-a", {"HOME": str(home)}),
        ("flmctl", "list", "-a", "--config", str(bad)),
        endpoint=None,
    )
    assert "flmping" in ok(by_flag) and "flmping" in ok(by_env) and "flmping" in ok(by_home)
    assert f"flmctl: {bad}: invalid current-context 'nope'" in failed(bad_file)
