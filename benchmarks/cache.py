"""Object cache put/get throughput and latency vs. a bare pyarrow Flight server, in one run.

Starts, each in its own process: `flame object-cache` (storage none, and fs:// under a temporary
dir) and two bare pyarrow Flight servers whose do_put keeps the table in a dict and whose do_get
sends it back (the floor: no keys, versions, locks or checks). One keeps tables in memory only,
the floor of storage none; the other also writes each upload to an Arrow IPC file (a temporary
file renamed into place, no fsync, as fs:// does), the floor of storage fs: a 1 MB file costs
about a millisecond on these VMs' disks, as much as the whole in-memory round trip, so fs:// is
compared with a floor that writes too. Both floors keep every new object, as the cache must
(a fresh allocation, or a fresh file, each time), and replace the one under a fixed key. One
client process then, for 1 KB, 1 MB and 100 MB objects, times
- put: a do_put of one {version, data} row to a fixed key, until the PutResult arrives (with fs
  storage, the object's file is replaced);
- new: the same do_put to a session key, so the cache names a new object each time (flamepy's
  put_object; with fs storage, a new file);
- get: a do_get of that object (ticket ``key:0``, the whole object) read to the end;
the same client code for every server, and reports medians (MB/s and ms) and the ratio of our
cache's time to its floor's (none to the in-memory floor, fs to the file-writing one). It also
times our SDK's put_object/get_object of the same bytes (pickling included). Goal: 1 MB and
100 MB within 1.5x of the floor.

Usage: flock /tmp/flame-bench.lock python benchmarks/cache.py [--repeats-scale 1.0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from flame.client import ObjectRef, cache_client

SIZES = [(1024, "1 KB", 300), (1024**2, "1 MB", 60), (100 * 1024**2, "100 MB", 7)]
SCHEMA = pa.schema([pa.field("version", pa.uint64()), pa.field("data", pa.binary())])


class BareServer(flight.FlightServerBase):
    """The floor: do_put stores the table under its path (a new key for a two-part path, as the
    cache names a new object) and, given a directory, writes it to a file; do_get returns it."""

    def __init__(self, location: str, directory: Path | None) -> None:
        super().__init__(location)
        self.tables: dict[bytes, pa.Table] = {}
        self.directory = directory
        self.uploads = 0

    def do_put(self, context: Any, descriptor: flight.FlightDescriptor, reader: Any, writer: Any) -> None:
        key = bytes(descriptor.path[0])
        self.uploads += 1
        if key.count(b"/") == 1:  # app/session: a new object each time
            key += b"/%d" % self.uploads
        table = reader.read_all()
        if self.directory is not None:
            path = self.directory / key.decode().replace("/", "_")
            tmp = path.with_suffix(".tmp")
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as file:
                file.write_table(table)
            os.replace(tmp, path)
        self.tables[key] = table
        writer.write(pa.py_buffer(b"ok"))

    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        key = bytes(ticket.ticket).rpartition(b":")[0]
        return flight.RecordBatchStream(self.tables[key])


def serve_bare(ready_file: str, directory: str | None) -> None:
    server = BareServer("grpc://127.0.0.1:0", Path(directory) if directory else None)
    Path(ready_file).write_text(f"grpc://127.0.0.1:{server.port}\n")
    server.serve()


@contextmanager
def process(args: list[str], ready_file: Path) -> Iterator[str]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ready_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {' '.join(args)}")
            time.sleep(0.05)
        yield ready_file.read_text().strip()
    finally:
        proc.terminate()
        proc.wait(30)


def row(data: bytes) -> pa.RecordBatch:
    return pa.record_batch([pa.array([0], pa.uint64()), pa.array([data], pa.binary())], schema=SCHEMA)


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def wire(endpoint: str, size: int, repeats: int) -> tuple[float, float, float]:
    """Medians of (put replacing one object, put of a new object, get)."""
    client = flight.FlightClient(endpoint)
    batch = row(os.urandom(size))
    key = f"bench/s/o{size}"

    def put(path: str) -> None:
        writer, reader = client.do_put(flight.FlightDescriptor.for_path(path), SCHEMA)
        writer.write_batch(batch)
        writer.done_writing()
        reader.read()
        writer.close()

    def get() -> None:
        table = client.do_get(flight.Ticket(f"{key}:0".encode())).read_all()
        assert table.num_rows >= 1

    puts = timed(lambda: put(key), repeats)
    news = timed(lambda: put(f"bench/new{size}"), repeats)  # the cache names a new object each time
    gets = timed(get, repeats)
    client.close()
    return statistics.median(puts), statistics.median(news), statistics.median(gets)


def sdk(endpoint: str, size: int, repeats: int) -> tuple[float, float, float]:
    """Medians of (update_object, put_object, get_object) through our SDK."""
    cache = cache_client(endpoint)
    payload = os.urandom(size)
    ref = cache.put_object("bench/sdk", payload)
    puts = timed(lambda: cache.update_object(ref, payload), repeats)
    news = timed(lambda: cache.put_object("bench/sdk-new", payload), repeats)
    fresh = ObjectRef(ref.endpoint, ref.key, 0)  # version 0: a whole download every time
    gets = timed(lambda: cache.get_object(fresh), repeats)
    return statistics.median(puts), statistics.median(news), statistics.median(gets)


def figure(size: int, seconds: float) -> str:
    return f"{size / seconds / 1024**2:8.1f} MB/s {seconds * 1000:8.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bare-server", metavar="READY_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--bare-dir", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--repeats-scale", type=float, default=1.0, help="scale the repeat counts (default 1)")
    args = parser.parse_args()
    if args.bare_server:
        serve_bare(args.bare_server, args.bare_dir)
        return
    with tempfile.TemporaryDirectory(prefix="flame-bench-cache-") as tmp:
        tmp_path = Path(tmp)
        ours = [sys.executable, "-m", "flame", "--log-level", "WARNING", "object-cache"]
        ours += ["--cache-endpoint", "grpc://127.0.0.1:0"]
        bare_args = [sys.executable, __file__, "--bare-server", str(tmp_path / "bare.ready")]
        (tmp_path / "bare-files").mkdir()
        bare_file_args = [sys.executable, __file__, "--bare-server", str(tmp_path / "bare-file.ready")]
        bare_file_args += ["--bare-dir", str(tmp_path / "bare-files")]
        with (
            process(bare_args, tmp_path / "bare.ready") as bare,
            process(bare_file_args, tmp_path / "bare-file.ready") as bare_file,
            process(
                [*ours, "--storage", "none", "--ready-file", str(tmp_path / "none.ready")], tmp_path / "none.ready"
            ) as none,
            process(
                [*ours, "--storage", f"fs://{tmp_path / 'fs'}", "--ready-file", str(tmp_path / "fs.ready")],
                tmp_path / "fs.ready",
            ) as fs,
        ):
            print(
                f"{'size':>7} {'op':>4}  {'bare Flight, memory':>26}  {'flame cache (none)':>26}  ratio"
                f"  {'bare Flight + file':>26}  {'flame cache (fs)':>26}  ratio  {'our SDK, none (pickle)':>26}"
            )
            for size, label, repeats in SIZES:
                n = max(3, int(repeats * args.repeats_scale))
                floor = wire(bare, size, n)
                mem = wire(none, size, n)
                file_floor = wire(bare_file, size, n)
                disk = wire(fs, size, n)
                ours_sdk = sdk(none, size, n)
                for i, op in enumerate(("put", "new", "get")):
                    cells = [figure(size, floor[i]), f"{figure(size, mem[i])}  {mem[i] / floor[i]:5.2f}"]
                    cells += [figure(size, file_floor[i]), f"{figure(size, disk[i])}  {disk[i] / file_floor[i]:5.2f}"]
                    cells.append(figure(size, ours_sdk[i]))
                    print(f"{label:>7} {op:>4}  " + "  ".join(cells), flush=True)
    print(
        "medians; ratio = our time / its floor's (none: bare Flight in memory; fs: bare Flight writing a file);"
        " lower is better, goal <= 1.5 for 1 MB and 100 MB"
    )


if __name__ == "__main__":
    main()
