"""`flame up` serves the object cache: an unmodified flamepy program, run as a user runs it, uses it.

The flamepy program runs in its own process with the environment `flame up` printed, so nothing
of flamepy's process-wide state is touched; objects put before a restart are there after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.conftest import free_port

FLAMEPY_PROGRAM = """
    import json, os, sys
    import numpy as np, pyarrow as pa
    import flamepy
    from flamepy.core import cache

    step = sys.argv[1]
    if step == "put":
        ref = cache.put_object("demo/ssn", {"weights": [1, 2, 3]})
        ref = cache.patch_object(cache.update_object(ref, [1]), [2])
        arr = cache.put_object("demo/ssn", np.arange(5))
        table = cache.put_object("demo/ssn", pa.table({"x": [1, 2]}))
        conn = flamepy.connect(os.environ["FLAME_ENDPOINT"])
        apps = [a.name for a in conn.list_applications()]
        print(json.dumps({"refs": [r.key for r in (ref, arr, table)], "version": ref.version, "apps": apps}))
    else:
        keys = json.loads(sys.argv[2])
        endpoint = os.environ["FLAME_CACHE_ENDPOINT"]
        merged = cache.get_object(cache.ObjectRef(endpoint, keys[0], 0), lambda b, d: b + sum(d, []))
        arr = cache.get_object(cache.ObjectRef(endpoint, keys[1], 0)).tolist()
        table = cache.get_object(cache.ObjectRef(endpoint, keys[2], 0)).column("x").to_pylist()
        cache.delete_objects("demo/*")
        print(json.dumps({"merged": merged, "array": arr, "table": table}))
"""


@contextmanager
def flame_up(data_dir: Path, cache_port: int) -> Iterator[dict[str, str]]:
    args = ["up", "--endpoint", f"http://127.0.0.1:{free_port()}", "--data-dir", str(data_dir), "--executors", "1"]
    up = subprocess.Popen(
        [sys.executable, "-m", "flame", *args, "--cache-endpoint", f"grpc://127.0.0.1:{cache_port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert up.stdout is not None
        banner = [up.stdout.readline() for _ in range(4)]
        exports = dict(line.split("export ", 1)[1].strip().split("=", 1) for line in banner if "export " in line)
        assert exports["FLAME_CACHE_ENDPOINT"] == f"grpc://127.0.0.1:{cache_port}", banner
        assert f"object cache storage: fs://{data_dir / 'cache'}" in banner[3]
        yield exports
        up.terminate()
        assert up.wait(60) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def run_flamepy(tmp_path: Path, env: dict[str, str], *args: str) -> dict[str, object]:
    script = tmp_path / "program.py"
    script.write_text(textwrap.dedent(FLAMEPY_PROGRAM))
    home = tmp_path / "home"  # no ~/.flame/flame.yaml: the exported variables are all it has
    home.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, str(script), *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.timeout(240)
def test_flamepy_uses_the_cache_of_flame_up_and_objects_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()
    with flame_up(tmp_path / "data", port) as env:
        put = run_flamepy(tmp_path, env, "put")
    assert put["version"] == 3 and put["apps"] == ["flmexec", "flmfunc", "flmping", "flmrun"]
    with flame_up(tmp_path / "data", port) as env:
        got = run_flamepy(tmp_path, env, "get", json.dumps(put["refs"]))
    assert got == {"merged": [1, 2], "array": [0, 1, 2, 3, 4], "table": [1, 2]}
