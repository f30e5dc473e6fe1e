"""Python functions on the cluster: flame.Executor.map vs. ProcessPoolExecutor(2).map (and Ray).

In one run:
- ``map`` of a tiny function over --items items: flame.Executor(max_workers=2) against a real
  ``flame up`` (chunksize 1 and --chunksize), ProcessPoolExecutor(2) (same chunk sizes), and Ray
  remote functions when ``ray`` is importable (skipped with a message otherwise); tasks/s;
- the cost of a first call: a new flame.Executor (session, executor bind, service start) until
  its first result, then the median of later single calls; and flamepy's Runner (flmrun) on a
  project that declares a dependency, cold (the executor manager installs the package) and warm
  (a second Runner on the same files reuses the installed environment).

Usage: flock /tmp/flame-bench.lock python benchmarks/executor.py [--items 10000]
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from _flame_up import flame_up

import flame


def tiny(x: int) -> int:
    return x + 1


def rate(run: Callable[[], list[int]], items: int) -> float:
    start = time.perf_counter()
    results = run()
    elapsed = time.perf_counter() - start
    assert results == [x + 1 for x in range(items)], "wrong results"
    return items / elapsed


def median_rate(run: Callable[[], list[int]], items: int, repeats: int) -> float:
    return statistics.median(rate(run, items) for _ in range(repeats))


def pool_rates(items: int, chunksize: int, repeats: int) -> tuple[float, float]:
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(tiny, range(100)))  # start the workers
        one = median_rate(lambda: list(pool.map(tiny, range(items))), items, repeats)
        chunked = median_rate(lambda: list(pool.map(tiny, range(items), chunksize=chunksize)), items, repeats)
    return one, chunked


def ray_rate(items: int) -> float | None:
    try:
        ray: Any = importlib.import_module("ray")  # optional: the `bench` extra
    except ImportError:
        return None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(tiny)
        ray.get([remote.remote(x) for x in range(100)])
        return rate(lambda: list(ray.get([remote.remote(x) for x in range(items)])), items)
    finally:
        ray.shutdown()


def executor_figures(endpoint: str, items: int, chunksize: int, repeats: int) -> dict[str, float]:
    started = time.perf_counter()
    with flame.Executor(max_workers=2, min_workers=2, endpoint=endpoint) as pool:
        pool.submit(tiny, 0).result()
        first = time.perf_counter() - started
        singles = []
        for x in range(50):
            began = time.perf_counter()
            pool.submit(tiny, x).result()
            singles.append(time.perf_counter() - began)
        one = median_rate(lambda: list(pool.map(tiny, range(items))), items, repeats)
        chunked = median_rate(lambda: list(pool.map(tiny, range(items), chunksize=chunksize)), items, repeats)
    return {"first": first, "single": statistics.median(singles), "map": one, "chunked": chunked}


PROJECT_PYPROJECT = """
[build-system]
requires = ["setuptools>=61.0"]
build-backend = "setuptools.build_meta"

[project]
name = "bench-runner"
version = "0.1.0"
dependencies = ["tabulate"]

[tool.setuptools]
py-modules = ["bench_tasks"]
"""

RUNNER_SCRIPT = """
import sys, time
from flamepy.runner import Runner
import bench_tasks
for name in sys.argv[1:]:
    began = time.perf_counter()
    with Runner(name) as rr:
        assert rr.service(bench_tasks.table)(3).get().split() == ["0", "1", "2"]
        print(f"RESULT {time.perf_counter() - began:.3f}", flush=True)
"""


def runner_first_calls(endpoint: str, cache: str, work: Path) -> tuple[float, float]:
    """Seconds from Runner() to its first result: cold (package installed), then warm (reused)."""
    project = work / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(PROJECT_PYPROJECT)
    (project / "bench_tasks.py").write_text(
        textwrap.dedent(
            """
            def table(n):
                import tabulate
                return tabulate.tabulate([[i] for i in range(n)], tablefmt="plain")
            """
        )
    )
    (project / "run.py").write_text(RUNNER_SCRIPT)
    env = {**os.environ, "FLAME_ENDPOINT": endpoint, "FLAME_CACHE_ENDPOINT": cache, "HOME": str(work)}
    env["PYTHONPATH"] = str(project)
    done = subprocess.run(
        [sys.executable, "run.py", "bench-cold", "bench-warm"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(f"the Runner failed:\n{done.stdout}\n{done.stderr}")
    cold, warm = (float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000, help="items in each map (default 10000)")
    parser.add_argument("--chunksize", type=int, default=100, help="chunk size of the chunked maps (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="map runs per figure; the median is shown (default 3)")
    parser.add_argument("--no-runner", action="store_true", help="skip the Runner's cold/warm first call")
    args = parser.parse_args()

    pool_one, pool_chunked = pool_rates(args.items, args.chunksize, args.repeats)
    ray = ray_rate(args.items)
    with flame_up(2, "memory") as cluster:
        cluster.wait_for_node()
        endpoint, cache = cluster.endpoint, cluster.cache_endpoint
        figures = executor_figures(endpoint, args.items, args.chunksize, args.repeats)
        runner = None if args.no_runner else runner_first_calls(endpoint, cache, cluster.data_dir)

    print(f"map of a tiny function over {args.items} items (median of {args.repeats} runs), 2 workers each")
    print(f"  ProcessPoolExecutor(2)           chunksize 1   {pool_one:>10,.0f} tasks/s")
    print(f"  flame.Executor(max_workers=2)    chunksize 1   {figures['map']:>10,.0f} tasks/s")
    print(f"  ProcessPoolExecutor(2)           chunksize {args.chunksize:<3} {pool_chunked:>10,.0f} items/s")
    print(f"  flame.Executor(max_workers=2)    chunksize {args.chunksize:<3} {figures['chunked']:>10,.0f} items/s")
    if ray is None:
        print("  Ray remote functions             skipped: ray is not importable here (pip install ray)")
    else:
        print(f"  Ray remote functions (2 cpus)                  {ray:>10,.0f} tasks/s")
    ratio_one, ratio_chunked = figures["map"] / pool_one, figures["chunked"] / pool_chunked
    print(f"ratio flame/pool: chunksize 1 {ratio_one:.3f}x, chunked {ratio_chunked:.3f}x")
    print("first call")
    print(f"  flame.Executor: new pool to first result      {figures['first'] * 1000:8.0f} ms")
    print(f"  flame.Executor: later single call (median)    {figures['single'] * 1000:8.2f} ms")
    if runner is not None:
        cold, warm = runner
        print(f"  flamepy Runner, cold (package + dependency installed)  {cold:6.2f} s")
        print(f"  flamepy Runner, warm (installed environment reused)    {warm:6.2f} s")


if __name__ == "__main__":
    main()
