"""`flame object-cache --config FILE` as an operator runs it: TLS, clean stop, clear config errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from flame.client import ObjectRef, cache_client
from tests.integration.conftest import free_port, wait_for
from tests.integration.test_tls import make_certificates

FLAMEPY = """
    from flamepy.core import cache
    ref = cache.put_object("tls/s", {"secret": 42})
    print(ref.endpoint, ref.key, cache.get_object(ref)["secret"])
"""


def test_a_tls_cache_serves_flamepy_and_our_sdk_and_stops_on_sigterm(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path)
    port = free_port()
    config = tmp_path / "flame-cluster.yaml"
    config.write_text(
        f"cache:\n  endpoint: grpcs://127.0.0.1:{port}\n  storage: fs://{tmp_path / 'objects'}\n"
        f"  tls:\n    cert_file: {cert}\n    key_file: {key}\n"
    )
    ready = tmp_path / "ready"
    cache = subprocess.Popen(
        [sys.executable, "-m", "flame", "object-cache", "--config", str(config), "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: ready.exists() or cache.poll() is not None, timeout=60)
        endpoint = ready.read_text().strip()
        assert endpoint == f"grpc+tls://127.0.0.1:{port}"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLAME_CACHE_ENDPOINT": f"grpcs://127.0.0.1:{port}"}
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(FLAMEPY)],
            env={**env, "FLAME_CA_FILE": str(ca)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        ref_endpoint, key_text, secret = done.stdout.split()
        assert (ref_endpoint, secret) == (endpoint, "42")
        ours = cache_client(f"grpcs://127.0.0.1:{port}", str(ca))
        assert ours.get_object(ObjectRef(endpoint, key_text)) == {"secret": 42}
        assert (tmp_path / "objects" / f"{key_text}.arrow").is_file()

        cache.send_signal(signal.SIGTERM)
        assert cache.wait(30) == 0
        assert cache.stdout is not None and f"export FLAME_CACHE_ENDPOINT={endpoint}" in cache.stdout.read()
    finally:
        if cache.poll() is None:
            cache.kill()
            cache.wait()


def test_bad_cache_config_is_refused_with_the_key_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "flame-cluster.yaml"
    config.write_text("cache:\n  endpoint: grpc://127.0.0.1:0\n  eviction:\n    max_memory: plenty\n")
    done = subprocess.run(
        [sys.executable, "-m", "flame", "object-cache", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{config}: invalid cache.eviction.max_memory 'plenty'" in done.stderr
    assert "Traceback" not in done.stderr
    busy = subprocess.run(
        [sys.executable, "-m", "flame", "object-cache", "--cache-endpoint", "grpc://256.1.1.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert busy.returncode != 0 and "Traceback" not in busy.stderr, busy.stderr
