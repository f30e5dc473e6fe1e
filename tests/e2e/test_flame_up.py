"""`flame up` as a user runs it: it serves, runs work, and Ctrl-C / SIGTERM leave nothing behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import flamepy
import pytest

from flame.executor_manager.shims._warm import WARM_MAIN
from tests.integration.conftest import free_port, process_alive, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _start_up(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], str]:
    """`flame up` with ``flags``, once it says it is up; and its endpoint."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "flame", "up", "--endpoint", endpoint, "--data-dir", str(tmp_path), *flags]
    up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert up.stdout is not None
    banner = up.stdout.readline()
    if not banner.startswith("Flame is up"):
        up.kill()
        up.wait()
        raise AssertionError(f"flame up did not start: {banner!r}")
    return up, endpoint


def _warm_children(pid: int) -> list[int]:
    """Children of ``pid`` started as warm interpreters (idle, or the services they became)."""
    return [child for child in _children(pid) if WARM_MAIN.encode() in _cmdline(child)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_no_warm_services_starts_every_service_cold(tmp_path: Path) -> None:
    up, endpoint = _start_up(tmp_path, "--executors", "1", "--no-warm-services")
    try:
        conn = flamepy.connect(endpoint)
        session = conn.create_session(flamepy.SessionAttributes(application="flmping", min_instances=1))
        pid = json.loads(session.run(b"").result(60))["pid"]
        assert pid in _children(up.pid) and WARM_MAIN.encode() not in _cmdline(pid)
        assert _warm_children(up.pid) == []
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_flame_up_serves_and_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    up = subprocess.Popen(
        [sys.executable, "-m", "flame", "up", "--endpoint", endpoint, "--data-dir", str(tmp_path), "--executors", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert up.stdout is not None
        banner = up.stdout.readline()
        assert banner.startswith(f"Flame is up: endpoint {endpoint}"), banner
        conn = flamepy.connect(endpoint)
        assert [a.name for a in conn.list_applications()] == ["flmexec", "flmfunc", "flmping", "flmrun"]
        session = conn.create_session(flamepy.SessionAttributes(application="flmping", min_instances=2))
        outputs = [json.loads(f.result(60)) for f in [session.run(b"") for _ in range(20)]]
        service_pids = {o["pid"] for o in outputs}
        # The local node runs inside `flame up`: the services are its own children.
        assert service_pids <= set(_children(up.pid))
        assert all(process_alive(p) for p in service_pids)
        assert (tmp_path / "flame.db").exists()
        session.close()  # the freed slots get warm interpreters again: those must stop too
        wait_for(lambda: len(_warm_children(up.pid)) == 2)
        children = set(_children(up.pid))

        up.send_signal(stop_signal)
        assert up.wait(60) == 0
        for pid in service_pids | children:
            wait_for(lambda pid=pid: not process_alive(pid), timeout=15)  # type: ignore[misc]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_bad_flags_and_config_give_clear_errors(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "flame", "up", "--executors", "0"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert "expected a whole number >= 1, got 0" in bad.stderr

    config = tmp_path / "flame-cluster.yaml"
    config.write_text("cluster:\n  schedule_interval: soon\n")
    bad = subprocess.run(
        [sys.executable, "-m", "flame", "session-manager", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "cluster.schedule_interval" in bad.stderr and "soon" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_quickstart_runs_a_real_workload() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "quickstart"), "--tasks", "10", "--samples", "2000"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "pi ~= 3.1" in done.stdout


def test_services_do_not_outlive_a_killed_flame_up(tmp_path: Path) -> None:
    up, endpoint = _start_up(tmp_path, "--executors", "3")
    try:
        conn = flamepy.connect(endpoint)
        session = conn.create_session(flamepy.SessionAttributes(application="flmping", min_instances=2))
        service_pids = {json.loads(f.result(60))["pid"] for f in [session.run(b"") for _ in range(10)]}
        assert service_pids and all(process_alive(p) for p in service_pids)
        # The third slot holds an idle warm interpreter: it must not outlive flame up either.
        idle = wait_for(lambda: set(_warm_children(up.pid)) - service_pids)
        children = set(_children(up.pid)) | set(idle)  # type: ignore[arg-type]
        up.kill()  # SIGKILL: nothing of flame up runs to stop its services
        up.wait(30)
        for pid in service_pids | children:
            wait_for(lambda pid=pid: not process_alive(pid), timeout=15)  # type: ignore[misc]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
