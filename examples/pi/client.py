"""Monte Carlo pi, the client: many tasks, results reduced here.

python examples/pi/client.py --local            # starts an all-in-one cluster for the run
python examples/pi/client.py                    # uses FLAME_ENDPOINT (e.g. after `flame up`)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import flame

SERVICE = Path(__file__).with_name("service.py").resolve()


def estimate_pi(conn: flame.Connection, tasks: int, samples: int) -> float:
    spec = {"command": sys.executable, "arguments": [str(SERVICE)], "description": "Monte Carlo pi"}
    try:
        conn.register_application("pi", spec)
    except flame.AlreadyExists:
        conn.update_application("pi", spec)
    with conn.create_session("pi") as session:
        inputs = [json.dumps({"samples": samples, "seed": seed}).encode() for seed in range(tasks)]
        results = [json.loads(out) for out in session.map(inputs)]
    inside: int = sum(r["inside"] for r in results)
    thrown: int = sum(r["samples"] for r in results)
    return 4.0 * inside / thrown


def standard_error(samples: int) -> float:
    """The standard error of the estimate 4 * hits / samples, each dart a hit with probability pi / 4."""
    p = math.pi / 4
    return 4.0 * math.sqrt(p * (1 - p) / samples)


def main() -> int:
    parser = argparse.ArgumentParser(description="Estimate pi with Monte Carlo tasks on Flame.")
    parser.add_argument("--tasks", type=int, default=100, help="number of tasks (default 100)")
    parser.add_argument("--samples", type=int, default=20_000, help="darts per task (default 20000)")
    parser.add_argument("--local", action="store_true", help="start an all-in-one cluster for this run")
    parser.add_argument("--endpoint", help="cluster endpoint (default: FLAME_ENDPOINT or http://127.0.0.1:8080)")
    args = parser.parse_args()
    for name in ("tasks", "samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")

    with ExitStack() as stack:
        endpoint = args.endpoint
        if args.local:
            from flame.testing import LocalCluster

            print("starting an all-in-one Flame cluster ...", flush=True)
            endpoint = stack.enter_context(LocalCluster(executors=2)).endpoint
        conn = stack.enter_context(flame.connect(endpoint))
        began = time.perf_counter()
        pi = estimate_pi(conn, args.tasks, args.samples)
        elapsed = time.perf_counter() - began
    spread = standard_error(args.tasks * args.samples)
    print(
        f"pi ~= {pi:.6f} (error {abs(pi - math.pi):.6f}, standard error {spread:.6f}) "
        f"from {args.tasks} tasks x {args.samples} samples in {elapsed:.2f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
