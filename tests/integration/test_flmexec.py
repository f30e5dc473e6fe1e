"""flmexec: scripts run per task under a real cluster, with Flame's JSON contract."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import flamepy
import pytest

import flame
from flame.errors import TaskFailed
from flame.testing import LocalCluster


@pytest.fixture(scope="module")
def session(cluster: LocalCluster) -> Iterator[flame.Session]:
    with flame.connect(cluster.endpoint) as conn, conn.create_session("flmexec") as ssn:
        yield ssn


def script(language: str, code: str, **extra: object) -> bytes:
    return json.dumps({"language": language, "code": textwrap.dedent(code), **extra}).encode()


def stdout_of(output: bytes) -> str:
    return bytes(json.loads(output)["data"]).decode()


def test_python_script_reads_stdin_and_returns_stdout(session: flame.Session) -> None:
    code = """
        import sys
        data = sys.stdin.read()
        print("got", data.upper())
    """
    output = session.invoke(script("python", code, input=list(b"hello")))
    assert stdout_of(output) == "got HELLO\n"


def test_shell_script_runs_in_the_executors_working_directory(session: flame.Session) -> None:
    first = session.invoke(script("shell", "echo kept > note.txt; pwd", runtime="bash"))
    second = session.invoke(script("shell", 'cat note.txt; read line; echo "stdin=$line"', input="abc\n"))
    assert stdout_of(first).strip()  # a directory
    assert stdout_of(second) == "kept\nstdin=abc\n"


def test_failing_script_fails_its_task_with_exit_code_and_stderr(session: flame.Session) -> None:
    code = """
        import sys
        print("partial output")
        print("something broke: disk on fire", file=sys.stderr)
        sys.exit(3)
    """
    with pytest.raises(TaskFailed) as failure:
        session.invoke(script("python", code))
    assert "exited with code 3" in failure.value.message
    assert "something broke: disk on fire" in failure.value.message
    assert stdout_of(session.invoke(script("shell", "echo still fine"))) == "still fine\n"


def test_script_past_its_timeout_is_killed_and_fails(session: flame.Session) -> None:
    started = time.monotonic()
    with pytest.raises(TaskFailed, match=r"ran past its timeout of 0.5s and was killed"):
        session.invoke(script("shell", "sleep 30; echo never", timeout=0.5))
    assert time.monotonic() - started < 20
    assert stdout_of(session.invoke(script("shell", "echo after"))) == "after\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"not json", "flmexec input must be JSON"),
        (b'{"language": "ruby", "code": "puts 1"}', "language must be one of python, shell"),
        (b'{"language": "shell", "code": "ls", "langauge": "x"}', "unknown key(s) langauge"),
        (b'{"language": "shell", "code": "ls", "runtime": "/tmp/evil-sh"}', "shell runtime must be one of"),
        (b'{"language": "python", "code": "1", "input": [300]}', "list of byte values 0-255"),
    ],
)
def test_bad_input_is_refused_with_what_is_accepted(session: flame.Session, data: bytes, expected: str) -> None:
    with pytest.raises(TaskFailed, match=expected.replace("(", r"\(").replace(")", r"\)")):
        session.invoke(data)


def test_flamepy_client_uses_flmexec_as_flame_documents_it(cluster: LocalCluster) -> None:
    conn = flamepy.connect(cluster.endpoint)
    ssn = conn.create_session(flamepy.SessionAttributes(application="flmexec"))
    try:
        request = {"language": "python", "runtime": None, "code": "print(6 * 7)", "input": None}
        response = json.loads(ssn.invoke(json.dumps(request).encode()))
        assert bytes(response["data"]).decode() == "42\n"
    finally:
        ssn.close()
        conn.close()


def test_builtin_applications_can_be_turned_off() -> None:
    with (
        LocalCluster(executors=1, cluster={"builtin_applications": ["flmping"]}) as local,
        flame.connect(local.endpoint) as conn,
    ):
        assert [app.name for app in conn.list_applications()] == ["flmping"]


def test_flame_run_prints_a_scripts_stdout_or_its_failure(cluster: LocalCluster, tmp_path: Path) -> None:
    good = tmp_path / "hello.py"
    good.write_text("import sys\nprint('hello', sys.stdin.read().strip())\n")
    bad = tmp_path / "bad.sh"
    bad.write_text("echo 'no such thing' >&2\nexit 4\n")
    flame_cli = [sys.executable, "-m", "flame", "run", "--endpoint", cluster.endpoint]
    done = subprocess.run([*flame_cli, str(good), "--input", "-"], input="world", capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "hello world\n"), done.stderr
    failed = subprocess.run([*flame_cli, str(bad)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert "shell script exited with code 4" in failed.stderr and "no such thing" in failed.stderr
    unknown = subprocess.run([*flame_cli, str(tmp_path / "x.rb")], capture_output=True, text=True)
    assert unknown.returncode == 1 and "cannot read script" in unknown.stderr
