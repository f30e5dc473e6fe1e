"""benchmarks/throughput.py in a tiny configuration: it runs to the end and reports every figure."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ("pool", "flame", "flamepy", "split", "grpc", "ceiling")


def test_throughput_benchmark_reports_every_figure(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    out = run_benchmark(tmp_path, "--tasks", "200", "--latency-tasks", "20", "--skip-ray", "--json", str(report))
    for heading in (
        "== ProcessPoolExecutor(2)",
        "== Ray actors (2, round-robin)",
        "== Flame (a): our client + our SDK service (flmping)",
        "== Flame (b): our client + unmodified flamepy 0.6.0 service",
        "== gRPC floor: client -> relay -> 2 echo processes",
        "== flamepy ceiling: 2 flamepy services called directly",
    ):
        assert heading in out, out
    assert "skipped: --skip-ray" in out
    assert "service (our SDK)" in out and "service (flamepy)" in out and "flame up (session manager" in out
    assert "session manager (its own process)" in out and "executor manager" in out
    target_lines = out[out.index("targets (issue 8)") : out.index("latency median against")].splitlines()[1:]
    assert len([line for line in target_lines if line.strip()]) == 8, out
    assert all(
        line.rstrip().endswith(("met", "MISSED")) or "n/a (skipped: --skip-ray)" in line
        for line in target_lines
        if line.strip()
    )
    floor = out[out.index("latency median against the gRPC floor") :]
    assert "Flame (a): our client + our SDK service (flmping)" in floor and "floor relay" in out, out
    assert "Flame (b) against the flamepy ceiling" in floor, out

    figures = json.loads(report.read_text())
    assert figures["config"]["tasks"] == 200 and figures["config"]["input_bytes"] == 16
    assert figures["systems"]["ray"]["skipped"] == "skipped: --skip-ray"
    for key in MEASURED:
        median = figures["systems"][key]["median"]
        for figure in ("tasks_per_s", "latency_median_ms", "latency_p99_ms", "cpu_us_per_task_total"):
            assert _positive(median[figure]), (key, figure, median)
        assert median["latency_p99_ms"] >= median["latency_median_ms"]
        # Per role, CPU time comes in clock ticks (10 ms): a light role may read 0 in 200 tasks.
        assert all(math.isfinite(us) and us >= 0 for us in median["cpu_us_per_task"].values()), median
        assert _positive(median["cpu_us_per_task"]["client (this process)"])
    for key in ("flame", "flamepy"):
        median = figures["systems"][key]["median"]
        for figure in ("first_result_s", "listening_s", "idle_pss_mb"):
            assert _positive(median[figure]), (key, figure, median)
        assert median["listening_s"] < median["first_result_s"]
        assert math.isclose(sum(median["idle_pss_mb_by_role"].values()), median["idle_pss_mb"], rel_tol=0.01)
    assert [t["met"] is None for t in figures["targets"]] == [False, True, True, False, False, True, False, False]


def test_floors_run_again_and_again_in_one_process_without_errors(tmp_path: Path) -> None:
    """Each floor and ceiling run makes grpc.aio calls from this process; a run after the first
    once printed "Event loop is closed" tracebacks (a new event loop per run)."""
    out = run_benchmark(
        tmp_path, "--systems", "grpc,ceiling", "--repeat", "3", "--tasks", "200", "--latency-tasks", "20"
    )
    assert "Flame (b) against the flamepy ceiling" in out and "latency median against the gRPC floor" in out


def run_benchmark(cwd: Path, *args: str) -> str:
    """Its standard output, once it ended well and printed no traceback."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), *args],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0
