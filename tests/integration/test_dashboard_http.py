"""The dashboard over real HTTP: /metrics as Prometheus parses it, live events, 404s and the token."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import flame
from flame.config import cluster_config_from_dict
from flame.session_manager.server import SessionManager
from flame.testing import LocalCluster
from tests.integration.conftest import wait_for
from tests.integration.test_tls import make_certificates

TOKEN = "s3cret-token-for-the-tests"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(executors=2, cluster={"dashboard": {"enabled": True, "port": 0}}) as local:
        yield local


@pytest.fixture(scope="module")
def url(cluster: LocalCluster) -> str:
    return str(cluster.run(lambda sm: sm.dashboard_url))


def get(address: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(address, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body, headers = get(url + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def finished(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], outcome: str) -> float:
    key = ("flame_tasks_finished_total", (("application", "flmping"), ("outcome", outcome)))
    return values.get(key, 0.0)


def test_after_n_tasks_the_finished_counter_grew_by_n(cluster: LocalCluster, url: str) -> None:
    before = samples(url)
    n = 300
    with flame.connect(cluster.endpoint) as conn:
        session = conn.create_session("flmping")
        futures = [session.run(b"") for _ in range(n - 1)] + [session.run(b"not json")]
        for future in futures[:-1]:
            future.result(60)
        with pytest.raises(flame.TaskFailed):
            futures[-1].result(60)
        after = samples(url)
    assert finished(after, "succeed") - finished(before, "succeed") == n - 1
    assert finished(after, "failed") - finished(before, "failed") == 1
    created = ("flame_tasks_created_total", (("application", "flmping"),))
    assert after[created] - before.get(created, 0.0) == n
    run_count = ("flame_task_run_seconds_count", (("application", "flmping"),))
    assert after[run_count] - before.get(run_count, 0.0) == n
    assert after[("flame_grpc_calls_total", (("code", "OK"), ("method", "CreateSession")))] >= 1
    assert after[("flame_storage_batch_records_count", ())] > 0
    assert after[("flame_scheduler_cycle_seconds_count", ())] > 0


def test_grpc_calls_are_counted_by_method_and_code(cluster: LocalCluster, url: str) -> None:
    key = ("flame_grpc_calls_total", (("code", "NOT_FOUND"), ("method", "GetSession")))
    before = samples(url).get(key, 0.0)
    with flame.connect(cluster.endpoint) as conn, pytest.raises(flame.NotFound):
        conn.get_session("no-such-session")
    assert samples(url)[key] == before + 1


def test_executor_gauges_match_flmctl_list(cluster: LocalCluster, url: str, tmp_path: Path) -> None:
    with flame.connect(cluster.endpoint) as conn:
        session = conn.create_session("flmping", min_instances=2)
        session.invoke(b"")

        def listed() -> Counter[str]:
            out = subprocess.run(
                [
                    str(Path(sys.executable).parent / "flmctl"),
                    "list",
                    "-e",
                    "-o",
                    "json",
                    "--endpoint",
                    cluster.endpoint,
                ],
                capture_output=True,
                text=True,
                timeout=30,
                env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
            )
            assert out.returncode == 0, out.stderr
            return Counter(e["state"] for e in json.loads(out.stdout))

        def gauges() -> Counter[str]:
            values = samples(url)
            return Counter(
                {
                    dict(labels)["state"]: int(v)
                    for (name, labels), v in values.items()
                    if name == "flame_executors" and v
                }
            )

        # Both read the same moment when nothing is changing: wait for two equal readings.
        agreed = wait_for(lambda: (lambda a, b: a == b and a)(listed(), gauges()), timeout=30)
        assert sum(agreed.values()) >= 2  # type: ignore[attr-defined]
        session.close()


def test_live_events_carry_the_overview(url: str) -> None:
    with urllib.request.urlopen(url + "events?topic=overview", timeout=10) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        line = stream.readline().decode()
    assert line.startswith("data: ")
    payload = json.loads(line[len("data: ") :])
    assert payload["nodes"][0]["state"] == "Ready"
    assert set(payload["series"]) == {"time", "finished", "pending"}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("sessions/no-such-session", "session &#x27;no-such-session&#x27; does not exist"),
        ("sessions/no-such-session/tasks/1", "does not exist"),
        ("executors/nope", "executor &#x27;nope&#x27; does not exist"),
        ("nodes/nope", "node &#x27;nope&#x27; is not registered"),
        ("applications/nope", "not registered"),
        ("no/such/page", "no page at /no/such/page"),
        ("events?topic=session:nope", "no live topic"),
        ("static/nope.js", "no page at"),
    ],
)
def test_unknown_ids_give_a_404_page(cluster: LocalCluster, url: str, path: str, message: str) -> None:
    status, body, headers = get(url + path)
    assert status == 404
    assert headers["Content-Type"].startswith("text/html")
    assert message in body and "Traceback" not in body


def test_an_unknown_task_of_a_real_session_is_a_404(cluster: LocalCluster, url: str) -> None:
    with flame.connect(cluster.endpoint) as conn:
        session = conn.create_session("flmping")
        status, body, _ = get(f"{url}sessions/{session.id}/tasks/999")
        assert status == 404 and "task &#x27;999&#x27; does not exist" in body
        status, body, _ = get(f"{url}sessions/{session.id}?state=Bogus&page=x")
        assert status == 200 and "unknown state Bogus" in body
        session.close()


def test_the_dashboard_is_read_only(url: str) -> None:
    request = urllib.request.Request(url, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 405


def test_the_web_server_loads_on_the_first_request_and_shows_what_came_before() -> None:
    """Nobody browsing costs the cluster no web stack; the first visitor still sees every task."""
    with LocalCluster(executors=1, cluster={"dashboard": {"enabled": True, "port": 0}}) as local:
        url = str(local.run(lambda sm: sm.dashboard_url))
        with flame.connect(local.endpoint) as conn:
            session = conn.create_session("flmping")
            for future in [session.run(b"") for _ in range(20)]:
                future.result(60)
        assert local.run(lambda sm: sm.dashboard.serving) is False
        assert finished(samples(url), "succeed") == 20  # answered once the web server loaded
        assert local.run(lambda sm: sm.dashboard.serving) is True
        port = int(url.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(OSError):  # stopped: the port is closed, not left in a backlog
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_dashboard_stopped_before_anyone_came_closes_its_port() -> None:
    with LocalCluster(executors=0, cluster={"dashboard": {"enabled": True, "port": 0}}) as local:
        url = str(local.run(lambda sm: sm.dashboard_url))
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # listening before it loads
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_token_guards_every_page_and_the_metrics() -> None:
    section = {"dashboard": {"enabled": True, "port": 0, "token": TOKEN}}
    with LocalCluster(executors=1, cluster=section) as local:
        url = str(local.run(lambda sm: sm.dashboard_url))
        for path in ("", "sessions", "metrics", "events?topic=overview", "api/overview"):
            assert get(url + path)[0] == 401
            assert get(url + path, {"Authorization": "Bearer wrong-token-of-some-length"})[0] == 401
        _, body, headers = get(url)
        assert "a valid token is required" in body and headers["WWW-Authenticate"] == "Bearer"
        assert get(url + "metrics", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert get(url + "static/dashboard.css")[0] == 200  # assets carry no data
        # A shared link with ?token= sets a cookie and drops the token from the address.
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{url}sessions?token={TOKEN}", timeout=10) as response:
            assert response.status == 200 and "token" not in response.url
        with opener.open(url + "nodes", timeout=10) as response:
            assert response.status == 200


def test_with_token_auth_the_cluster_tokens_of_people_open_the_pages(tmp_path: Path) -> None:
    from tests.integration.auth_helpers import TOKENS, token_of, write_tokens

    tokens = write_tokens(tmp_path / "tokens.yaml")
    section = {"dashboard": {"enabled": True, "port": 0}, "auth": {"mode": "token", "tokens_file": str(tokens)}}
    with LocalCluster(executors=1, cluster=section) as local:
        url = str(local.run(lambda sm: sm.dashboard_url))
        for role in ("admin", "user", "viewer"):
            assert get(url + "metrics", {"Authorization": f"Bearer {token_of(role)}"})[0] == 200, role
        for refused in (None, token_of("node"), "unknown-token-0123456789abcdef"):
            headers = {"Authorization": f"Bearer {refused}"} if refused else None
            assert get(url + "sessions", headers)[0] == 401, refused
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{url}sessions?token={token_of('viewer')}", timeout=10) as response:
            assert response.status == 200 and "token" not in response.url
        write_tokens(tokens, [name for name in TOKENS if name != "watcher"])  # the viewer's token revoked
        assert local.run(lambda sm: sm.reload_auth())
        assert get(url + "metrics", {"Authorization": f"Bearer {token_of('viewer')}"})[0] == 401
        with pytest.raises(urllib.error.HTTPError) as refused_page:  # its cookie no longer opens pages
            opener.open(url + "nodes", timeout=10)
        assert refused_page.value.code == 401


def test_beyond_localhost_it_serves_tls_with_the_cluster_certificate(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path)
    config = cluster_config_from_dict(
        {
            "cluster": {
                "endpoint": "https://127.0.0.1:0",
                "storage": "memory",
                "data_dir": str(tmp_path / "data"),
                "tls": {"cert_file": str(cert), "key_file": str(key)},
                "dashboard": {"enabled": True, "host": "0.0.0.0", "port": 0, "token": TOKEN},
            }
        }
    )

    def fetch(address: str, context: ssl.SSLContext | None, token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(address, headers=headers), timeout=10, context=context):
                return 200
        except urllib.error.HTTPError as exc:
            return exc.code

    async def check() -> None:
        async with SessionManager(config) as manager:
            url = manager.dashboard_url
            assert url is not None and url.startswith("https://127.0.0.1:")
            trusted = ssl.create_default_context(cafile=str(ca))
            assert await asyncio.to_thread(fetch, url + "metrics", trusted, TOKEN) == 200
            assert await asyncio.to_thread(fetch, url + "metrics", trusted, None) == 401
            with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain http is not served
                await asyncio.to_thread(fetch, url.replace("https", "http") + "metrics", None, TOKEN)

    asyncio.run(asyncio.wait_for(check(), 30))


def test_with_mtls_the_client_certificates_of_people_open_the_pages(tmp_path: Path) -> None:
    from tests.integration.auth_helpers import make_ca, make_certificate

    ca, cert, key = make_certificates(tmp_path)
    watcher = make_certificate(tmp_path, "watcher", "watcher")
    node = tmp_path / "agent.crt", tmp_path / "agent.key"  # CN executor-manager, mapped to role node
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_ca(elsewhere)
    stranger = make_certificate(elsewhere, "stranger", "watcher")  # the right name, another CA
    identities = [
        {"subject": "watcher", "role": "viewer", "name": "watcher"},
        {"subject": "executor-manager", "role": "node", "name": "em"},
    ]
    config = cluster_config_from_dict(
        {
            "cluster": {
                "endpoint": "https://127.0.0.1:0",
                "storage": "memory",
                "data_dir": str(tmp_path / "data"),
                "tls": {"cert_file": str(cert), "key_file": str(key), "ca_file": str(ca)},
                "auth": {"mode": "mtls", "identities": identities},
                "dashboard": {"enabled": True, "host": "0.0.0.0", "port": 0},
            }
        }
    )

    def fetch(address: str, client: tuple[Path, Path] | None) -> int | str:
        context = ssl.create_default_context(cafile=str(ca))
        if client is not None:
            context.load_cert_chain(*client)
        try:
            with urllib.request.urlopen(address, timeout=10, context=context):
                return 200
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, ConnectionError, ssl.SSLError):
            return "refused at the handshake"

    async def check() -> None:
        async with SessionManager(config) as manager:
            url = f"{manager.dashboard_url}sessions"
            assert await asyncio.to_thread(fetch, url, watcher) == 200
            assert await asyncio.to_thread(fetch, url, node) == 401  # a node opens nothing here
            assert await asyncio.to_thread(fetch, url, None) == 401
            assert await asyncio.to_thread(fetch, url, stranger) == "refused at the handshake"

    asyncio.run(asyncio.wait_for(check(), 30))
