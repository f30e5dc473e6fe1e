"""The examples as a user runs them: each client with --local at a small size, judged on what it prints."""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def run_example(script: str, *args: str, timeout: float = 60) -> str:
    """Run an example's client with --local; its stdout (the test fails if the client fails)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--local", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def _search(pattern: str, text: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, f"no line matching {pattern!r} in:\n{text}"
    return match


# ---- Monte Carlo pi -------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_pi_is_within_five_standard_errors() -> None:
    tasks, samples = 20, 20_000
    out = run_example("pi/client.py", "--tasks", str(tasks), "--samples", str(samples))
    estimate = float(_search(r"^pi ~= (\d+\.\d+) ", out).group(1))
    p = math.pi / 4
    standard_error = 4 * math.sqrt(p * (1 - p) / (tasks * samples))
    assert abs(estimate - math.pi) <= 5 * standard_error, out


# ---- value at risk ----------------------------------------------------------------------------


def _load_var_model() -> ModuleType:
    """examples/var/var_model.py, imported under a name of its own (the examples are not a package)."""
    name = "flame_examples_var_model"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / "var" / "var_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(60)
def test_var_matches_a_single_process_computation_and_loads_data_once_per_executor(tmp_path: Path) -> None:
    scenarios, tasks, seed = 2_000, 20, 7
    args = ["--scenarios", str(scenarios), "--tasks", str(tasks), "--seed", str(seed), "--positions", "100"]
    out = run_example("var/var_client.py", *args, "--executors", "2", "--data-dir", str(tmp_path), "--check")

    # The client's own check: distributed and direct figures, printed at full precision.
    checks = re.findall(r"^check: (VaR|ES) (\d+)%\s+distributed (\S+)\s+direct (\S+)$", out, re.MULTILINE)
    assert {(name, level) for name, level, _, _ in checks} == {("VaR", "99"), ("ES", "99"), ("VaR", "95"), ("ES", "95")}
    for name, level, distributed, direct in checks:
        assert float(distributed) == pytest.approx(float(direct), rel=1e-9, abs=1e-9), f"{name} {level}%"
    identical = _search(r"^check: P&L bitwise identical in (\d+) of (\d+) scenarios .*: OK$", out)
    assert int(identical.group(2)) == scenarios

    # An independent recomputation here, from the files the client wrote.
    model = _load_var_model()
    revaluer = model.Revaluer.load(tmp_path / "portfolio.json", tmp_path / "market.json")
    pnl = revaluer.block(0, scenarios, seed)
    distributed = {(name, level): float(value) for name, level, value, _ in checks}
    for level in (99, 95):
        var, es = model.var_es(pnl, level / 100)
        assert distributed["VaR", str(level)] == pytest.approx(var, rel=1e-9)
        assert distributed["ES", str(level)] == pytest.approx(es, rel=1e-9)

    # Loaded once per executor (service process), not once per task.
    loaded = _search(r"^data loaded (\d+) times for (\d+) tasks \((\d+) service processes on (\d+) executors", out)
    loads, ran, processes, executors = (int(g) for g in loaded.groups())
    assert ran == tasks
    assert loads == processes == executors, out
    assert 1 <= executors <= 2, out


# ---- elasticity -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    t: float
    low_executors: int
    low_pending: int
    low_done: int
    high_executors: int | None  # None before the high-priority session exists
    high_done: int | None


_ROW = re.compile(
    r"^\s*(\d+\.\d)\s+\|\s+(\d+)\s+(\d+)\s+\d+\s+(\d+)\s+\|\s+(?:(\d+)\s+\d+\s+\d+\s+(\d+)|-\s+-\s+-\s+-)\s*$",
    re.MULTILINE,
)
LOW_TASKS, HIGH_TASKS = 40, 16


@pytest.fixture(scope="module")
def elastic_rows() -> tuple[str, list[Row]]:
    out = run_example(
        "elastic/elastic_client.py",
        *("--executors", "4", "--low-tasks", str(LOW_TASKS), "--high-tasks", str(HIGH_TASKS)),
        *("--task-ms", "200", "--delay", "1"),
        timeout=50,
    )
    rows = [
        Row(
            float(m[1]),
            int(m[2]),
            int(m[3]),
            int(m[4]),
            None if m[5] is None else int(m[5]),
            None if m[6] is None else int(m[6]),
        )
        for m in _ROW.finditer(out)
    ]
    assert len(rows) >= 3, out
    return out, rows


@pytest.mark.timeout(60)
def test_elastic_runs_both_sessions_to_completion(elastic_rows: tuple[str, list[Row]]) -> None:
    out, rows = elastic_rows
    assert rows[0].high_executors is None, out
    last = rows[-1]
    assert (last.low_done, last.high_done) == (LOW_TASKS, HIGH_TASKS), out
    assert any(r.high_executors for r in rows), out
    assert all(r.low_executors + (r.high_executors or 0) <= 4 for r in rows), out


@pytest.mark.timeout(60)
def test_elastic_high_priority_takes_executors_while_low_has_a_backlog(elastic_rows: tuple[str, list[Row]]) -> None:
    out, rows = elastic_rows
    assert any(r.high_executors and r.low_pending > 0 for r in rows), out
