"""The CLI's flags: usage errors (exit 2), help with examples, one parser behind three names, endpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import flame.cli
from flame.cli._flmctl import build_parser as flmctl_parser
from flame.cli._flmping import build_parser as flmping_parser
from flame.cli._main import build_parser as flame_parser
from flame.client._endpoint import _resolve_endpoint
from flame.errors import InvalidArgument

COMMANDS = ("list", "view", "create", "close", "register", "update", "unregister")


def usage_error(parser: object, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)  # type: ignore[attr-defined]
    assert info.value.code == 2
    return capsys.readouterr().err


def test_public_entry_points() -> None:
    assert flame.cli.__all__ == ["flmctl_main", "flmping_main", "main"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["list"], "one of the arguments -a/--application"),
        (["list", "-a", "-s"], "not allowed with argument"),
        (["list", "-s", "-x"], "unrecognized arguments: -x"),
        (["view", "-a", "x", "-s", "y"], "not allowed with argument"),
        (["create"], "the following arguments are required: -a/--app"),
        (["create", "-a", "x", "-P", "high"], "expected a whole number >= 0 (higher runs first), got 'high'"),
        (["create", "-a", "x", "-r", "cpu=1,disk=2"], "unknown resource 'disk': accepted keys are cpu, mem"),
        (["close"], "the following arguments are required: -s/--session"),
        (["register"], "the following arguments are required: -f/--file"),
        (["list", "-s", "--endpoint", "ftp://x"], "invalid --endpoint 'ftp://x': scheme 'ftp' is not supported"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_flmctl_bad_flags_exit_2_saying_what_is_accepted(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(flmctl_parser(), argv, capsys)
    assert expected in err
    assert "usage: flmctl" in err and "--help' for what is accepted" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-t", "0"], "expected a whole number of tasks >= 1, got '0'"),
        (["-d", "-5"], "expected milliseconds from 0 to 3600000"),
        (["-d", "99999999"], "expected milliseconds from 0 to 3600000"),
        (["-r", "mem=lots"], "invalid memory size 'lots'"),
    ],
)
def test_flmping_bad_flags_exit_2(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert expected in usage_error(flmping_parser(), argv, capsys)


def test_client_flags_go_before_or_after_the_command() -> None:
    before = flmctl_parser().parse_args(["--endpoint", "h:1", "--config", "c.yaml", "list", "-s"])
    after = flmctl_parser().parse_args(["list", "-s", "--endpoint", "h:1", "--config", "c.yaml"])
    assert (before.endpoint, before.config) == (after.endpoint, after.config) == ("h:1", "c.yaml")
    assert flmctl_parser().parse_args(["list", "-s"]).endpoint is None


def test_flame_offers_the_same_commands_with_the_same_flags() -> None:
    for argv in (["list", "-e", "-o", "json"], ["create", "-a", "app", "-P", "3", "-r", "cpu=1,mem=1g"]):
        ours, theirs = flame_parser().parse_args(argv), flmctl_parser().parse_args(argv)
        assert ours.handler is theirs.handler
        assert {k: v for k, v in vars(ours).items() if k != "log_level"} == {
            k: v
            for k, v in vars(theirs).items()
            if k not in ("config", "endpoint", "token_file")  # flmctl's top-level flags
        }
    ping = flame_parser().parse_args(["ping", "-p", "-t", "5", "--endpoint", "h:1"])
    assert ping.handler is flmping_parser().parse_args([]).handler
    assert (ping.perf, ping.task_num, ping.endpoint) == (True, 5, "h:1")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    for parser, prog in ((flmctl_parser(), "flmctl"), (flame_parser(), "flame")):
        with pytest.raises(SystemExit) as info:
            parser.parse_args([command, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"  {prog} {command} " in out and "--endpoint URL" in out


def test_flmping_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        flmping_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "flmping -p -t 10000" in out and "130 on Ctrl-C" in out


def test_the_cli_does_not_load_the_servers() -> None:
    code = (
        "import sys, flame.cli, flame.cli._flmctl, flame.cli._flmping; "
        "print(sorted(m for m in sys.modules if m.startswith(('flame.session_manager', 'flame.executor_manager'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# -- where the client connects (flame.client._endpoint over flame.config) -----------------------


def write_config(path: Path, endpoint: str, ca_file: str | None = None) -> Path:
    tls = f"\n      tls: {{ca_file: {ca_file}}}" if ca_file else ""
    path.write_text(
        "current-context: prod\n"
        "contexts:\n"
        "  - name: dev\n"
        "    cluster: {endpoint: 'http://dev:1'}\n"
        "  - name: prod\n"
        f"    cluster:\n      endpoint: '{endpoint}'{tls}\n"
    )
    return path


def test_endpoint_comes_from_the_current_context_of_flame_yaml(tmp_path: Path) -> None:
    (tmp_path / ".flame").mkdir()
    write_config(tmp_path / ".flame" / "flame.yaml", "https://prod:9443", "/ca.pem")
    resolved = _resolve_endpoint(env={"HOME": str(tmp_path)})
    assert (resolved.target, resolved.secure, resolved.ca_file) == ("prod:9443", True, "/ca.pem")
    assert _resolve_endpoint(env={"HOME": str(tmp_path / "nowhere")}).target == "127.0.0.1:8080"


def test_environment_and_arguments_override_the_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "flame.yaml", "https://prod:9443", "/ca.pem")
    env = {"HOME": str(tmp_path), "FLAME_ENDPOINT": "https://env:1", "FLAME_CA_FILE": "/env.pem"}
    resolved = _resolve_endpoint(config_path=config, env=env)
    assert (resolved.target, resolved.ca_file) == ("env:1", "/env.pem")
    resolved = _resolve_endpoint("https://arg:2", config_path=config, env={"HOME": str(tmp_path)})
    assert (resolved.target, resolved.ca_file) == ("arg:2", "/ca.pem")  # the context's CA still applies
    assert _resolve_endpoint("https://arg:2", "/arg.pem", config_path=config, env={}).ca_file == "/arg.pem"


def test_a_bad_config_file_is_reported_with_its_path(tmp_path: Path) -> None:
    config = tmp_path / "flame.yaml"
    config.write_text("current-context: missing\ncontexts: []\n")
    with pytest.raises(InvalidArgument, match=r"flame.yaml: invalid current-context 'missing'"):
        _resolve_endpoint(config_path=config, env={})
    # An explicit plain-http endpoint has nothing left for a config file to decide.
    broken_home = tmp_path / "home"
    (broken_home / ".flame").mkdir(parents=True)
    (broken_home / ".flame" / "flame.yaml").write_text("current-context: [")
    assert _resolve_endpoint("http://h:1", env={"HOME": str(broken_home)}).target == "h:1"
