"""Value-at-risk batch, the client: scenario blocks as tasks, the loss distribution reduced here.

python examples/var/var_client.py --local --check     # all-in-one cluster for the run; verify in-process
python examples/var/var_client.py                     # uses FLAME_ENDPOINT (e.g. after `flame up`)

The client writes a portfolio and a market snapshot (deterministic from --data-seed) into
--data-dir, opens a session whose common data names both files, and submits one task per block of
scenarios. Each executor loads the files once, when it enters the session, and reuses them for
every block it prices. With --check the client recomputes every scenario itself and compares.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from var_model import Revaluer, var_es, write_inputs

import flame

SERVICE = Path(__file__).with_name("var_service.py").resolve()
APPLICATION = "var"
LEVELS = (0.99, 0.95)
TOLERANCE = 1e-9  # relative; the two paths run the same code, so they should agree exactly


@dataclass
class BatchResult:
    pnl: list[float]
    tasks: int
    loads: int  # times the data was loaded, over all service processes
    processes: int  # service processes that ran tasks
    executors: int
    load_ms: tuple[float, float]  # fastest and slowest load
    seconds: float


def split(scenarios: int, tasks: int) -> list[tuple[int, int]]:
    """(first, count) of ``tasks`` blocks covering ``scenarios``, sizes differing by at most one."""
    tasks = min(tasks, scenarios)
    size, extra = divmod(scenarios, tasks)
    blocks = []
    first = 0
    for n in range(tasks):
        count = size + (n < extra)
        blocks.append((first, count))
        first += count
    return blocks


def register(conn: flame.Connection) -> None:
    spec = {"command": sys.executable, "arguments": [str(SERVICE)], "description": "Value-at-risk scenario pricer"}
    try:
        conn.register_application(APPLICATION, spec)
    except flame.AlreadyExists:
        conn.update_application(APPLICATION, spec)


def run_batch(
    conn: flame.Connection, files: dict[str, str], blocks: Sequence[tuple[int, int]], seed: int
) -> BatchResult:
    register(conn)
    began = time.perf_counter()
    with conn.create_session(APPLICATION, common_data=json.dumps(files).encode()) as session:
        inputs = [json.dumps({"first": first, "count": count, "seed": seed}).encode() for first, count in blocks]
        outputs: list[dict[str, Any]] = [json.loads(out) for out in session.map(inputs)]
    seconds = time.perf_counter() - began
    pnl = [value for out in outputs for value in out["pnl"]]
    processes: dict[tuple[str, int], int] = {}
    for out in outputs:
        key = (out["executor"], out["pid"])
        processes[key] = max(processes.get(key, 0), int(out["loads"]))
    load_ms = [float(out["load_ms"]) for out in outputs]
    return BatchResult(
        pnl=pnl,
        tasks=len(outputs),
        loads=sum(processes.values()),
        processes=len(processes),
        executors=len({executor for executor, _ in processes}),
        load_ms=(min(load_ms), max(load_ms)),
        seconds=seconds,
    )


def report(result: BatchResult, base_value: float) -> None:
    print(f"{len(result.pnl)} scenarios in {result.tasks} tasks on the cluster: {result.seconds:.2f}s")
    low, high = result.load_ms
    print(
        f"data loaded {result.loads} times for {result.tasks} tasks "
        f"({result.processes} service processes on {result.executors} executors; a load took {low:.1f}-{high:.1f} ms)"
    )
    print(f"portfolio value {base_value:,.2f}; 1-day loss distribution:")
    for level in LEVELS:
        var, es = var_es(result.pnl, level)
        print(f"  VaR {level:.0%}: {var:>16,.2f}   expected shortfall {level:.0%}: {es:>16,.2f}")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * max(1.0, abs(b))


def check(result: BatchResult, revaluer: Revaluer, blocks: Sequence[tuple[int, int]], seed: int) -> bool:
    """Recompute every scenario in this process; print both results; True when they agree."""
    began = time.perf_counter()
    direct = [value for first, count in blocks for value in revaluer.block(first, count, seed)]
    print(f"check: recomputed {len(direct)} scenarios in this process in {time.perf_counter() - began:.2f}s")
    if len(direct) != len(result.pnl):
        print(f"check: the cluster returned {len(result.pnl)} P&L values for {len(direct)} scenarios: MISMATCH")
        return False
    agree = True
    for level in LEVELS:
        ours, theirs = var_es(result.pnl, level), var_es(direct, level)
        for name, a, b in (("VaR", ours[0], theirs[0]), ("ES", ours[1], theirs[1])):
            print(f"check: {name} {level:.0%}  distributed {a!r}  direct {b!r}")
            agree = agree and _close(a, b)
    pairs = list(zip(result.pnl, direct, strict=True))
    identical = sum(a == b for a, b in pairs)
    worst = max(abs(a - b) for a, b in pairs)
    agree = agree and all(_close(a, b) for a, b in pairs)
    verdict = "OK" if agree else "MISMATCH"
    print(
        f"check: P&L bitwise identical in {identical} of {len(direct)} scenarios "
        f"(max |difference| {worst!r}): {verdict}"
    )
    return agree


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Value-at-risk of a portfolio of linear positions and options on Flame."
    )
    parser.add_argument("--scenarios", type=int, default=10_000, help="Monte Carlo scenarios (default 10000)")
    parser.add_argument("--tasks", type=int, default=50, help="tasks, each a block of scenarios (default 50)")
    parser.add_argument("--positions", type=int, default=200, help="positions in the portfolio (default 200)")
    parser.add_argument("--seed", type=int, default=7, help="scenario seed (default 7)")
    parser.add_argument("--data-seed", type=int, default=42, help="seed of the portfolio and market (default 42)")
    parser.add_argument("--data-dir", type=Path, help="where to write the data files (default: a temporary directory)")
    parser.add_argument("--check", action="store_true", help="recompute all scenarios here and compare")
    parser.add_argument("--local", action="store_true", help="start an all-in-one cluster for this run")
    parser.add_argument("--executors", type=int, default=2, help="executors of the --local cluster (default 2)")
    parser.add_argument("--endpoint", help="cluster endpoint (default: FLAME_ENDPOINT or http://127.0.0.1:8080)")
    args = parser.parse_args(argv)
    for name in ("scenarios", "tasks", "positions", "executors"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    blocks = split(args.scenarios, args.tasks)
    with ExitStack() as stack:
        data_dir = args.data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flame-var-")))
        portfolio, market = write_inputs(data_dir.resolve(), args.positions, args.data_seed)
        print(f"wrote {portfolio.name} ({args.positions} positions) and {market.name} to {portfolio.parent}")
        endpoint = args.endpoint
        if args.local:
            from flame.testing import LocalCluster

            print(f"starting an all-in-one Flame cluster with {args.executors} executors ...", flush=True)
            endpoint = stack.enter_context(LocalCluster(executors=args.executors)).endpoint
        conn = stack.enter_context(flame.connect(endpoint))
        result = run_batch(conn, {"portfolio": str(portfolio), "market": str(market)}, blocks, args.seed)
        revaluer = Revaluer.load(portfolio, market)
    report(result, revaluer.base_value)
    if args.check and not check(result, revaluer, blocks, args.seed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
