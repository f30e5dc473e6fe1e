"""A small chaos run (benchmarks/chaos.py runs the large one): nothing acknowledged is lost."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _chaos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flame_chaos", ROOT / "benchmarks" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(300)
def test_every_task_succeeds_with_its_output_while_processes_are_killed() -> None:
    report = _chaos().run_chaos(tasks=4000, interval=0.8, seed=7)
    print("\n".join(report.lines()))
    assert report.failed == [] and report.wrong == 0
    assert report.succeeded == 4000
    assert sum(report.kills.values()) >= 3, report.kills  # the run did kill things
