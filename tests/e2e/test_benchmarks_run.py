"""Every other benchmark in a tiny configuration: it runs to the end and prints its figures.

A benchmark that no longer runs (an API it uses changed) is found here, not by the next person
who needs its numbers. The figures themselves are not checked: these sizes measure nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

RUNS = {
    "auth_cost.py": (["--tasks", "100", "--rounds", "1", "--calls", "200", "--holders", "3"], "ratio: token check"),
    "dashboard_cost.py": (["--tasks", "200", "--rounds", "1"], "ratio on/off"),
    "pending_memory.py": (["--tasks", "2000", "--burst", "1000"], "bytes per pending task"),
    "cache.py": (["--repeats-scale", "0.01"], "medians; ratio = our time / its floor's"),
    "core.py": (["--tasks", "500", "--rounds", "1"], "ratio controller/core"),
    "executor.py": (["--items", "200", "--repeats", "1", "--no-runner"], "ratio flame/pool"),
    "kubernetes_pods.py": (["--pods", "3", "--repeat", "1"], "pods created/s"),
    "scheduler_sim.py": (["--nodes", "20", "--sessions", "20", "--cycles", "30"], "Jain's index"),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs_to_its_figures(script: str, tmp_path: Path) -> None:
    args, expected = RUNS[script]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=tmp_path,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert expected in done.stdout, done.stdout[-3000:]
