"""Our SDK's object cache calls against our cache, and flamepy and our SDK sharing objects."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from flamepy.core import cache as fp

import flame
from flame.client import cache_client
from flame.config import cache_config_from_dict
from flame.object_cache import ObjectCache
from flame.testing import LocalCluster
from tests.integration.conftest import write_service


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(executors=2) as local:
        os.environ["FLAME_CACHE_ENDPOINT"] = local.cache_endpoint
        fp._context_cache = None  # flamepy reads FLAME_CACHE_ENDPOINT once per process
        yield local
    os.environ.pop("FLAME_CACHE_ENDPOINT", None)
    fp._context_cache = None


@pytest.fixture(scope="module")
def conn(cluster: LocalCluster) -> Iterator[flame.Connection]:
    with flame.connect(cluster.endpoint) as connection:
        yield connection


def merge(base: list[int], deltas: list[list[int]]) -> list[int]:
    return base + [value for delta in deltas for value in delta]


def test_objects_arrays_and_tables_through_our_sdk(conn: flame.Connection, cluster: LocalCluster) -> None:
    ref = conn.put_object("sdk/s1", {"k": [1, 2]})
    assert isinstance(ref, flame.ObjectRef) and ref.version == 1 and ref.endpoint == cluster.cache_endpoint
    assert conn.get_object(ref) == {"k": [1, 2]}
    array = np.linspace(0, 1, 50).reshape(5, 10)
    assert np.array_equal(conn.get_object(conn.put_object("sdk/s1", array)), array)
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    assert conn.get_object(conn.put_object("sdk/s1", table)).equals(table)
    assert conn.get_object(conn.put_object("sdk/s1", table.to_batches()[0])).equals(table.to_batches()[0])


def test_update_and_patches_and_a_get_that_fetches_only_what_changed(
    conn: flame.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = conn.update_object(conn.put_object("sdk/s2", [1]), [10])
    assert ref.version == 2 and conn.get_object(ref) == [10]
    received: list[int] = []
    client = conn.cache._client
    real_do_get = client.do_get

    def counting_do_get(ticket: Any) -> Any:
        reader = real_do_get(ticket)
        table = reader.read_all()
        received.append(table.num_rows)
        return _Replay(table)

    monkeypatch.setattr(conn.cache, "_client", _Proxy(client, do_get=counting_do_get))
    for value in (20, 30, 40):
        ref = conn.patch_object(ref, [value])
    assert ref.version == 5
    assert conn.get_object(ref, deserializer=merge) == [10, 20, 30, 40]
    assert received == [3]  # the three patches only: the base was held from the first get
    assert conn.get_object(ref, deserializer=merge) == [10, 20, 30, 40]
    assert received == [3, 0]  # unchanged: nothing but the schema crosses


class _Replay:
    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def read_all(self) -> pa.Table:
        return self._table


class _Proxy:
    def __init__(self, inner: Any, **overrides: Any) -> None:
        self._inner, self._overrides = inner, overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._inner, name)


def test_100_mb_delete_by_prefix_and_files(conn: flame.Connection, tmp_path: Path) -> None:
    payload = os.urandom(100 * 1024 * 1024)
    big = conn.put_object("sdk/big", payload)
    assert conn.get_object(flame.ObjectRef(big.endpoint, big.key)) == payload
    conn.delete_objects("sdk/big")
    with pytest.raises(flame.NotFound, match=f"object {big.key} not found"):
        conn.get_object(flame.ObjectRef(big.endpoint, big.key))

    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(2 * 1024 * 1024 + 5))
    uploaded = conn.upload_object("sdk/pkg/model.bin", source)
    conn.download_object(uploaded, tmp_path / "out" / "model.bin")
    assert (tmp_path / "out" / "model.bin").read_bytes() == source.read_bytes()
    assert [r.key for r in conn.list_objects("sdk/pkg")] == ["sdk/pkg/model.bin"]
    conn.delete_objects("sdk/*")
    assert conn.list_objects("sdk/*") == []


def test_flamepy_and_our_sdk_see_each_others_objects(conn: flame.Connection) -> None:
    theirs = fp.put_object("shared/s", {"from": "flamepy"})
    assert conn.get_object(flame.ObjectRef(theirs.endpoint, theirs.key, theirs.version)) == {"from": "flamepy"}
    theirs = fp.patch_object(theirs, [2])
    assert conn.get_object(flame.ObjectRef(theirs.endpoint, theirs.key), deserializer=lambda b, d: d) == [[2]]
    their_array = fp.put_object("shared/s", np.arange(6))
    assert np.array_equal(conn.get_object(flame.ObjectRef(their_array.endpoint, their_array.key)), np.arange(6))

    ours = conn.put_object("shared/s", [1])
    ours = conn.patch_object(ours, [2])
    as_theirs = fp.ObjectRef(endpoint=ours.endpoint, key=ours.key, version=ours.version)
    assert fp.get_object(as_theirs, deserializer=merge) == [1, 2]
    table = pa.table({"v": [1.5]})
    our_table = conn.put_object("shared/s", table)
    assert fp.get_object(fp.ObjectRef(our_table.endpoint, our_table.key, 0)).equals(table)
    # An ObjectRef encodes the same way in both SDKs (it is what sessions carry as common data).
    assert fp.ObjectRef.decode(ours.encode()) == as_theirs
    assert flame.ObjectRef.decode(as_theirs.encode()) == ours


OUR_SERVICE = """
    import os
    import flame

    class Lookup(flame.FlameService):
        def on_session_enter(self, context):
            self.context = context

        def on_task_invoke(self, context):
            table = self.context.common_object()  # fetched once per binding, then held
            return f"{table[context.input.decode()]}:{os.getpid()}".encode()

        def on_session_leave(self):
            pass

    flame.run(Lookup())
"""


def test_a_session_whose_common_data_is_an_object_ref(conn: flame.Connection, tmp_path: Path) -> None:
    conn.register_application("sdk-cd", write_service(tmp_path, "lookup", OUR_SERVICE))
    ref = conn.put_object("sdk-cd/ssn-2", {"x": 5, "y": 6})
    with conn.create_session("sdk-cd", ref, session_id="ssn-2", max_instances=1) as session:
        first = session.invoke(b"x").decode()
        conn.delete_objects("sdk-cd/ssn-2")  # the binding holds what it resolved
        outputs = [first, *(session.invoke(key).decode() for key in (b"y", b"x"))]
    assert [o.split(":")[0] for o in outputs] == ["5", "6", "5"]
    assert len({o.split(":")[1] for o in outputs}) == 1  # one service process, one binding


def test_objects_survive_a_restart_through_our_sdk(tmp_path: Path) -> None:
    config = cache_config_from_dict({"cache": {"endpoint": "grpc://127.0.0.1:0", "storage": f"fs://{tmp_path}"}})
    with ObjectCache(config) as first:
        ref = cache_client(first.endpoint).put_object("r/s", {"n": 1})
        ref = cache_client(first.endpoint).patch_object(ref, [2])
    with ObjectCache(config) as second:
        got = cache_client(second.endpoint).get_object(flame.ObjectRef(second.endpoint, ref.key), lambda b, d: (b, d))
        assert got == ({"n": 1}, [[2]])
        assert [r.version for r in cache_client(second.endpoint).list_objects()] == [2]
