"""How the host shim builds a service's argv, environment, working directory and socket path."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from flame.executor_manager.shims import Launch, ShimError, expand, plan_launch, socket_path_for
from flame.executor_manager.shims._warm import WarmEntry, warm_entry
from flame.types import ApplicationSpec


def test_expand_replaces_both_forms_and_blanks_unknown_variables() -> None:
    env = {"HOME": "/home/u", "N": "3"}
    assert expand("${HOME}/bin:$HOME/x-$N", env) == "/home/u/bin:/home/u/x-3"
    assert expand("a${MISSING}b $ALSO_MISSING.", env) == "ab ."
    assert expand("cost: $ 5 and $$", env) == "cost: $ 5 and $$"


def plan(spec: ApplicationSpec, tmp_path: Path, base_env: dict[str, str] | None = None) -> Launch:
    return plan_launch(
        application="app",
        spec=spec,
        executor_id="e1",
        session_id="s1",
        work_dir=tmp_path / "work",
        socket_dir=tmp_path / "s",
        base_env=base_env if base_env is not None else {"PATH": "/usr/bin", "TOOLS": "/opt/tools"},
    )


def test_launch_for_a_flame_python_module(tmp_path: Path) -> None:
    spec = ApplicationSpec(command="${FLAME_PYTHON}", arguments=["-m", "flame.apps.flmping", "--id=$FLAME_EXECUTOR_ID"])
    launch = plan_launch(
        application="flmping",
        spec=spec,
        executor_id="e1",
        session_id="s1",
        work_dir=tmp_path / "work",
        socket_dir=tmp_path / "s",
        base_env={"PATH": "/usr/bin"},
    )
    assert launch.argv == [sys.executable, "-m", "flame.apps.flmping", "--id=e1"]
    assert launch.cwd == tmp_path / "work" / "e1"
    assert launch.socket_path == tmp_path / "s" / "e1.sock"
    assert launch.env["FLAME_INSTANCE_ENDPOINT"] == str(tmp_path / "s" / "e1.sock")
    assert (launch.env["FLAME_EXECUTOR_ID"], launch.env["FLAME_SESSION_ID"]) == ("e1", "s1")
    assert launch.env["FLAME_PYTHON"] == sys.executable
    assert launch.env["PATH"] == "/usr/bin"


def test_application_environment_is_expanded_against_the_manager_environment(tmp_path: Path) -> None:
    spec = ApplicationSpec(
        command="$TOOLS/serve",
        environments={"APP_HOME": "$TOOLS/app", "APP_PY": "${FLAME_PYTHON}", "APP_X": "$NOPE"},
        working_directory="$APP_HOME/run",
    )
    launch = plan(spec, tmp_path)
    assert launch.env["APP_HOME"] == "/opt/tools/app"
    assert launch.env["APP_PY"] == sys.executable
    assert launch.env["APP_X"] == ""
    assert launch.argv == ["/opt/tools/serve"]
    assert launch.cwd == Path("/opt/tools/app/run")


def test_relative_working_directory_is_under_work_dir(tmp_path: Path) -> None:
    launch = plan(ApplicationSpec(command="serve", working_directory="apps/a"), tmp_path)
    assert launch.cwd == tmp_path / "work" / "apps" / "a"


def test_command_with_spaces_is_split_unless_it_is_a_file(tmp_path: Path) -> None:
    launch = plan(ApplicationSpec(command="python3 -u 'my service.py'", arguments=["--x"]), tmp_path)
    assert launch.argv == ["python3", "-u", "my service.py", "--x"]
    script = tmp_path / "my service"
    script.write_text("#!/bin/sh\n")
    launch = plan(ApplicationSpec(command=str(script)), tmp_path)
    assert launch.argv == [str(script)]


@pytest.mark.parametrize("command", [None, "", "   ", "$UNSET_VARIABLE"])
def test_missing_command_is_refused(tmp_path: Path, command: str | None) -> None:
    with pytest.raises(ShimError, match="application app has no command"):
        plan(ApplicationSpec(command=command), tmp_path)


def test_unbalanced_quotes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ShimError, match="invalid command"):
        plan(ApplicationSpec(command="python3 'oops"), tmp_path)


def test_socket_path_stays_short(tmp_path: Path) -> None:
    short = socket_path_for(Path("/run/flame"), "e1")
    assert short == Path("/run/flame/e1.sock")
    hashed = socket_path_for(Path("/run/flame"), "x" * 120)
    assert hashed.parent == Path("/run/flame") and len(str(hashed)) < 100
    assert hashed == socket_path_for(Path("/run/flame"), "x" * 120)
    with pytest.raises(ShimError, match="choose a shorter socket_dir"):
        socket_path_for(Path("/" + "d" * 100), "e1")


def test_services_get_the_nodes_credential_for_the_object_cache_and_a_reloaded_token_file(tmp_path: Path) -> None:
    from flame.executor_manager import AgentSettings
    from flame.executor_manager.shims.host import _cache_credentials
    from flame.types import ResourceRequirement

    def settings(**extra: object) -> AgentSettings:
        base = {"session_manager": "sm:8080", "node_name": "n", "capacity": ResourceRequirement(cpu=1)}
        return AgentSettings(**base, work_dir=tmp_path, socket_dir=tmp_path, **extra)  # type: ignore[arg-type]

    assert _cache_credentials(settings()) == {}
    assert _cache_credentials(settings(token="t" * 20)) == {"FLAME_CACHE_TOKEN": "t" * 20}
    token_file = tmp_path / "token"
    token_file.write_text("rotated-token-0123456789\n")
    assert _cache_credentials(settings(token="old-token-0123456789", token_file=token_file)) == {
        "FLAME_CACHE_TOKEN": "rotated-token-0123456789"
    }
    token_file.unlink()  # unreadable now: the token the process already has
    assert _cache_credentials(settings(token="old-token-0123456789", token_file=token_file)) == {
        "FLAME_CACHE_TOKEN": "old-token-0123456789"
    }
    cert, key = tmp_path / "node.pem", tmp_path / "node.key"
    assert _cache_credentials(settings(tls_cert=cert, tls_key=key)) == {
        "FLAME_CACHE_CERT_FILE": str(cert),
        "FLAME_CACHE_KEY_FILE": str(key),
    }


# ---- which launches a warm interpreter may run (flame.executor_manager.shims._warm) ----


def warm(argv: list[str], tmp_path: Path, env: dict[str, str] | None = None, own: dict[str, str] | None = None) -> Any:
    launch = Launch(argv=argv, env=env if env is not None else {}, cwd=tmp_path, socket_path=tmp_path / "x.sock")
    return warm_entry(launch, argv[0], python=sys.executable, own_env=own if own is not None else {})


def test_a_module_or_a_script_of_this_python_runs_warm(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text("")
    assert warm([sys.executable, "-m", "pkg.mod", "-x", "1"], tmp_path) == WarmEntry("module", "pkg.mod", ("-x", "1"))
    assert warm([sys.executable, "svc.py", "a"], tmp_path) == WarmEntry("path", "svc.py", ("a",))


def test_what_only_the_command_itself_runs_faithfully_starts_cold(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text("")
    assert warm([sys.executable, "-u", "svc.py"], tmp_path) is None  # an interpreter option
    assert warm([sys.executable, "-m"], tmp_path) is None
    assert warm([sys.executable, "missing.py"], tmp_path) is None  # python's own error, from python
    assert warm([sys.executable], tmp_path) is None
    assert warm(["/bin/sh", "svc.py"], tmp_path) is None


def test_the_same_file_in_another_directory_is_another_environment(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text("")
    venv_python = tmp_path / "bin" / "python"
    venv_python.parent.mkdir()
    venv_python.symlink_to(sys.executable)
    launch = Launch(argv=[str(venv_python), "svc.py"], env={}, cwd=tmp_path, socket_path=tmp_path / "x.sock")
    assert warm_entry(launch, str(venv_python), python=sys.executable, own_env={}) is None


@pytest.mark.parametrize("name", ["PYTHONPATH", "PYTHONHASHSEED", "GRPC_VERBOSITY", "LD_PRELOAD", "MALLOC_ARENA_MAX"])
def test_a_variable_read_at_interpreter_start_that_differs_starts_cold(tmp_path: Path, name: str) -> None:
    argv = [sys.executable, "-m", "pkg"]
    assert warm(argv, tmp_path, env={name: "/opt/1"}, own={}) is None
    assert warm(argv, tmp_path, env={}, own={name: "/opt/1"}) is None
    assert warm(argv, tmp_path, env={name: "/opt/2"}, own={name: "/opt/1"}) is None
    assert warm(argv, tmp_path, env={name: "/opt/1"}, own={name: "/opt/1"}) is not None
    assert warm(argv, tmp_path, env={"APP_SETTING": "1", name: "/opt/1"}, own={name: "/opt/1"}) is not None


def test_a_relative_pythonpath_entry_starts_cold(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "pkg"]
    assert warm(argv, tmp_path, env={"PYTHONPATH": "lib"}, own={"PYTHONPATH": "lib"}) is None
    assert warm(argv, tmp_path, env={"PYTHONPATH": "/opt/lib"}, own={"PYTHONPATH": "/opt/lib"}) is not None
