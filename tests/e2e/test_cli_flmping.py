"""`flmping` (and `flame ping`) as a user runs it: real entry points against a real local cluster."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import flame
from flame.testing import LocalCluster
from tests.integration.conftest import wait_for

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(executors=2) as local:
        yield local


def command(program: str, *argv: str) -> list[str]:
    return [sys.executable, "-m", "flame", *argv] if program == "flame" else [str(BIN / program), *argv]


def environ(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    env["HOME"] = str(tmp_path)  # no ~/.flame/flame.yaml of the user's
    return env


def ping(cluster: LocalCluster, tmp_path: Path, *argv: str, program: str = "flmping") -> str:
    sub_command = ["ping"] if program == "flame" else []
    result = subprocess.run(
        command(program, *sub_command, *argv, "--endpoint", cluster.endpoint),
        capture_output=True,
        text=True,
        env=environ(tmp_path),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar without a terminal, no warnings
    return result.stdout


def session_state(cluster: LocalCluster, session_id: str) -> str:
    with flame.connect(cluster.endpoint) as conn:
        return conn.get_session(session_id).state.name


def test_one_row_per_task_then_the_session_is_closed(cluster: LocalCluster, tmp_path: Path) -> None:
    out = ping(cluster, tmp_path, "-t", "6", "-d", "5")
    banner, table, footer = out.strip().split("\n\n")
    assert banner.startswith("Session <flmping-") and banner.endswith("start to run <6> tasks in the session:")
    header, *rows = [line.split() for line in table.split("\n")]
    assert header == ["Task", "State", "Host", "PID", "Executor", "Duration"]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert all(r[1] == "Succeed" and r[3].isdigit() and r[6] == "ms" for r in rows)
    assert footer.startswith("<6> tasks were completed in <") and footer.endswith("6 succeeded, 0 failed.")
    session_id = banner.split("<")[1].split(">")[0]
    assert session_state(cluster, session_id) == "CLOSED"


def test_perf_mode_prints_the_benchmark_summary(cluster: LocalCluster, tmp_path: Path) -> None:
    out = ping(cluster, tmp_path, "-p", "-t", "200", "-P", "2", "-r", "cpu=1,mem=256m")
    assert "BENCHMARK RESULTS" in out and "Task  State" not in out
    summary = dict(line.split(":", 1) for line in out.split("\n") if line.startswith(("Succeeded", "Failed", "Thr")))
    assert summary["Succeeded"].strip() == "200/200" and summary["Failed"].strip() == "0"
    assert summary["Throughput"].strip().endswith("tasks/sec") and float(summary["Throughput"].split()[0]) > 0


def test_json_for_scripts_under_both_names(cluster: LocalCluster, tmp_path: Path) -> None:
    report = json.loads(ping(cluster, tmp_path, "-t", "4", "-c", "shared", "-o", "json"))
    assert report["summary"]["succeeded"] == 4 and report["summary"]["failed"] == 0
    assert [t["task"] for t in report["tasks"]] == ["1", "2", "3", "4"]
    assert all(isinstance(t["pid"], int) and t["executor"] and t["state"] == "Succeed" for t in report["tasks"])
    perf = json.loads(ping(cluster, tmp_path, "-p", "-t", "20", "-o", "json", program="flame"))
    assert set(perf) == {"session", "summary"} and perf["summary"]["tasks"] == 20
    assert set(perf["summary"]) == {"tasks", "succeeded", "failed", "duration_s", "throughput"}


def test_a_progress_bar_only_on_a_terminal(cluster: LocalCluster, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            command("flmping", "-p", "-t", "40", "-d", "20", "--endpoint", cluster.endpoint),
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            env=environ(tmp_path),
        )
        os.close(follower)
        out, _ = process.communicate(timeout=60)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal is closed once the process exits
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(leader)
    assert process.returncode == 0
    assert b"\r[" in terminal and b"/40" in terminal and b"tasks/s" in terminal
    assert terminal.endswith(b"\r\x1b[K")  # erased before the summary
    assert "Succeeded:       40/40" in out


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_closes_the_session_and_exits_130(cluster: LocalCluster, tmp_path: Path, stop: signal.Signals) -> None:
    """Last in this file: the cluster lets tasks it already started finish after the close."""
    process = subprocess.Popen(
        command("flmping", "-t", "4", "-d", "2000", "--endpoint", cluster.endpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ(tmp_path),
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        session_id = banner.split("<")[1].split(">")[0]
        with flame.connect(cluster.endpoint) as conn:
            wait_for(lambda: conn.get_session(session_id).pending + conn.get_session(session_id).running > 0)
        started = time.monotonic()
        process.send_signal(stop)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert time.monotonic() - started < 10, "closing must not wait for the running tasks"
    assert err == f"flmping: interrupted; closing session {session_id}\n"
    assert session_state(cluster, session_id) == "CLOSED"
