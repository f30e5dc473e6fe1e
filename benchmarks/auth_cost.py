"""What token authentication costs the session manager, per task: auth off vs. token auth, same run.

Starts two `flame up` clusters (memory storage, flmping executors): one without authentication,
one with cluster.auth.mode token (a tokens file of --holders entries). Rounds alternate between
them; each round runs --tasks no-op tasks and reads the session manager process's CPU time
(user + system, from /proc) before and after, giving session manager CPU per task. Two paths:

- ``sdk``: our SDK, tasks batched (SubmitTasks / WatchSession): few checked calls per many tasks;
- ``unary``: one CreateTask call per task (as flamepy sends them), results on one WatchSession:
  one token check per task, the worst case.

A 2% difference is within the noise of those end-to-end figures on a shared machine, so it also
measures the check where it runs: two session managers in this process (off, token), a client
process making --calls GetSession calls per round, and the event-loop thread's CPU time per call.
The difference per call, over the unary path's session manager CPU per task, is the ratio it
prints (one check per task). It also times the guard alone in a loop. Medians, rounds
interleaved. Run it under the team's benchmark lock:

    flock /tmp/flame-bench.lock .venv/bin/python benchmarks/auth_cost.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import wait
from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml
from _flame_up import flame_up

import flame
from flame.auth.identity import TokenAuthenticator
from flame.config import cluster_config_from_dict
from flame.protocol import ext_pb2, ext_pb2_grpc, frontend_pb2, frontend_pb2_grpc, types_pb2
from flame.session_manager.auth import Guard
from flame.session_manager.server import SessionManager

TICKS = os.sysconf("SC_CLK_TCK")
FINISHED = {types_pb2.Succeed, types_pb2.Failed}


@dataclass
class Cluster:
    name: str
    endpoint: str
    pid: int
    token: str | None

    @property
    def metadata(self) -> tuple[tuple[str, str], ...] | None:
        return None if self.token is None else (("authorization", f"Bearer {self.token}"),)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def write_tokens(path: Path, holders: int) -> str:
    """A tokens file with ``holders`` entries; returns the admin's token (the last entry, the slowest to find)."""
    entries = [{"name": f"user-{i}", "role": "user", "token": f"user-token-{i:04d}-0123456789"} for i in range(holders)]
    entries.append({"name": "bench", "role": "admin", "token": "bench-admin-token-0123456789"})
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return str(entries[-1]["token"])


@contextlib.contextmanager
def cluster_up(name: str, work: Path, executors: int, holders: int) -> Iterator[Cluster]:
    token = None
    section: dict[str, object] = {}
    if name == "token":
        token = write_tokens(work / "tokens.yaml", holders)
        section = {"auth": {"mode": "token", "tokens_file": str(work / "tokens.yaml")}}
    with flame_up(executors, "memory", section, data_dir=work / name) as up:
        up.wait_for_node(token)
        yield Cluster(name, up.endpoint, up.pid, token)


def sdk_round(cluster: Cluster, tasks: int) -> float:
    """Session manager CPU seconds per task through our SDK's batched path."""
    with flame.connect(cluster.endpoint, token=cluster.token) as conn:
        session = conn.create_session("flmping")
        for future in [session.run(b"") for _ in range(50)]:  # warm up
            future.result(60)
        before = cpu_seconds(cluster.pid)
        futures = [session.run(b"") for _ in range(tasks)]
        _, not_done = wait(futures, timeout=600)
        after = cpu_seconds(cluster.pid)
        assert not not_done
        session.close()
    return (after - before) / tasks


async def _unary(cluster: Cluster, tasks: int) -> float:
    async with grpc.aio.insecure_channel(cluster.endpoint.removeprefix("http://")) as channel:
        frontend, ext = frontend_pb2_grpc.FrontendStub(channel), ext_pb2_grpc.FrontendExtStub(channel)
        metadata = cluster.metadata
        sid = f"unary-{time.monotonic_ns()}"
        spec = types_pb2.SessionSpec(application="flmping")
        await frontend.CreateSession(frontend_pb2.CreateSessionRequest(session_id=sid, session=spec), metadata=metadata)
        watch = ext.WatchSession(ext_pb2.WatchSessionRequest(session_id=sid), metadata=metadata)
        await watch.initial_metadata()
        gate = asyncio.Semaphore(64)

        async def create() -> None:
            async with gate:
                task = types_pb2.TaskSpec(session_id=sid, input=b"")
                await frontend.CreateTask(frontend_pb2.CreateTaskRequest(task=task), metadata=metadata)

        before = cpu_seconds(cluster.pid)
        creating = asyncio.gather(*(create() for _ in range(tasks)))
        done = 0
        async for batch in watch:
            done += sum(1 for task in batch.tasks if task.status.state in FINISHED)
            if done >= tasks:
                break
        await creating
        after = cpu_seconds(cluster.pid)
        watch.cancel()
        await frontend.CloseSession(frontend_pb2.CloseSessionRequest(session_id=sid), metadata=metadata)
    return (after - before) / tasks


class _Context:
    """The parts of a grpc.aio ServicerContext the guard reads."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


async def _guard_cost(auth: TokenAuthenticator, token: str, calls: int) -> float:
    """Seconds per call that the guard adds around a handler: the token check, the role table, the wrapper."""

    async def behaviour(request: bytes, context: object) -> bytes:
        return request

    guarded = Guard(auth).wrap("/flame.v1.Frontend/CreateTask", behaviour, False)
    context = _Context((("user-agent", "grpc-python"), ("authorization", f"Bearer {token}")))
    best_plain = best_guarded = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(calls):
            await behaviour(b"", context)
        best_plain = min(best_plain, time.process_time() - start)
        start = time.process_time()
        for _ in range(calls):
            await guarded(b"", context)
        best_guarded = min(best_guarded, time.process_time() - start)
    return (best_guarded - best_plain) / calls


def check_cost(holders: int, calls: int = 20_000) -> float:
    """Seconds per call of the guard's own work (token check included)."""
    with tempfile.TemporaryDirectory() as tmp:
        token = write_tokens(Path(tmp) / "tokens.yaml", holders)
        auth = TokenAuthenticator(Path(tmp) / "tokens.yaml")
    return asyncio.run(_guard_cost(auth, token, calls))


# A client process that makes ``calls`` GetSession calls, 64 at a time.
_CALLER = """
import asyncio, sys, grpc
from flame.protocol import frontend_pb2, frontend_pb2_grpc, types_pb2
port, token, calls, sid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
metadata = None if token == "-" else (("authorization", "Bearer " + token),)
async def main():
    async with grpc.aio.insecure_channel("127.0.0.1:" + port) as channel:
        stub = frontend_pb2_grpc.FrontendStub(channel)
        spec = types_pb2.SessionSpec(application="flmping")
        request = frontend_pb2.CreateSessionRequest(session_id=sid, session=spec)
        await stub.CreateSession(request, metadata=metadata)
        gate = asyncio.Semaphore(64)
        async def one():
            async with gate:
                await stub.GetSession(frontend_pb2.GetSessionRequest(session_id=sid), metadata=metadata)
        await asyncio.gather(*(one() for _ in range(calls)))
asyncio.run(main())
"""


async def _per_call(work: Path, holders: int, rounds: int, calls: int) -> dict[str, list[float]]:
    """Event-loop CPU seconds per GetSession call of two session managers in this process (off, token).

    The guard runs on the event loop thread, so its thread time shows the check in the real server
    (metadata included) without the executors' and gRPC threads' noise.
    """
    token = write_tokens(work / "tokens.yaml", holders)
    managers: dict[str, SessionManager] = {}
    for name in ("off", "token"):
        section: dict[str, object] = {"endpoint": "http://127.0.0.1:0", "storage": "memory", "data_dir": str(work)}
        if name == "token":
            section["auth"] = {"mode": "token", "tokens_file": str(work / "tokens.yaml")}
        managers[name] = SessionManager(cluster_config_from_dict({"cluster": section}))
        await managers[name].start()
    results: dict[str, list[float]] = {"off": [], "token": []}
    try:
        for round_ in range(rounds):
            for name in ("off", "token") if round_ % 2 == 0 else ("token", "off"):
                args = [str(managers[name].port), token if name == "token" else "-", str(calls), f"s{round_}"]
                caller = await asyncio.create_subprocess_exec(sys.executable, "-c", _CALLER, *args)
                before = time.thread_time()
                await caller.wait()
                results[name].append((time.thread_time() - before) / calls)
    finally:
        for manager in managers.values():
            await manager.shutdown()
    return results


def _us(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e6:.1f}us ({min(values) * 1e6:.0f}-{max(values) * 1e6:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per cluster and path (default 5)")
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--holders", type=int, default=20, help="entries in the tokens file (default 20)")
    parser.add_argument("--calls", type=int, default=3000, help="GetSession calls per per-call round (default 3000)")
    args = parser.parse_args()

    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="flame-auth-bench-") as tmp:
        work = Path(tmp)
        with (
            cluster_up("off", work, args.executors, args.holders) as off,
            cluster_up("token", work, args.executors, args.holders) as on,
        ):
            for round_ in range(args.rounds):
                for cluster in (off, on) if round_ % 2 == 0 else (on, off):
                    results.setdefault(("sdk", cluster.name), []).append(sdk_round(cluster, args.tasks))
                    unary = asyncio.run(_unary(cluster, args.tasks))
                    results.setdefault(("unary", cluster.name), []).append(unary)
        with tempfile.TemporaryDirectory(prefix="flame-auth-calls-") as calls_dir:
            per_call = asyncio.run(_per_call(Path(calls_dir), args.holders, 2 * args.rounds, args.calls))
    check = check_cost(args.holders)

    print(f"end to end: session manager process CPU per task, median (min-max) of {args.rounds} rounds of {args.tasks}")
    for path in ("sdk", "unary"):
        plain, checked = results[(path, "off")], results[(path, "token")]
        base = statistics.median(plain)
        change = f"{(statistics.median(checked) - base) / base * 100:+.1f}%" if base else "n/a (no CPU tick counted)"
        print(f"  {path:<6} auth off {_us(plain)}   token {_us(checked)}   {change}")
    off_call, on_call = statistics.median(per_call["off"]), statistics.median(per_call["token"])
    print(f"per call: session manager event-loop CPU per GetSession, {2 * args.rounds} rounds of {args.calls}")
    print(f"  auth off {_us(per_call['off'])}   token {_us(per_call['token'])}")
    print(f"guard alone, in a loop ({args.holders + 1} token holders): {check * 1e6:.2f}us per call")
    unary_off = statistics.median(results[("unary", "off")])
    added = max(on_call - off_call, 0.0)
    print(
        f"ratio: token check per call / session manager CPU per task on the unary path (one check per task): "
        f"{added * 1e6:.1f}us / {unary_off * 1e6:.0f}us = "
        + (f"{added / unary_off * 100:.2f}% (target < 2%)" if unary_off else "n/a (no CPU tick counted)")
    )


if __name__ == "__main__":
    main()
