"""The object cache's keys, versions, patches, storage and eviction, without a network."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from flame.errors import InvalidArgument, InvalidState, NotFound, Unavailable
from flame.object_cache.eviction import EvictionConfig
from flame.object_cache.keys import ObjectKey, parse_ticket
from flame.object_cache.objects import blob
from flame.object_cache.storage import FsStorage, NoneStorage, open_storage
from flame.object_cache.store import ObjectStore

KEY = ObjectKey.parse_full("app/s/obj")


def store(tmp_path: Path | None = None, **eviction: int) -> ObjectStore:
    storage = FsStorage(tmp_path) if tmp_path is not None else NoneStorage()
    return ObjectStore(storage, EvictionConfig(**eviction), max_object_size=1024**2)  # type: ignore[arg-type]


def value(data: bytes) -> pa.BinaryArray:
    return blob(data)


@pytest.mark.parametrize("text", ["app/s", "app/*", "app/s/o", "a.b/s-1/o_2"])
def test_keys_flame_accepts(text: str) -> None:
    assert str(ObjectKey.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("app", "expected '<app>/<session>'"),
        ("a/b/c/d", "expected '<app>/<session>'"),
        ("app//o", "bad part ''"),
        ("app/../o", "bad part '..'"),
        ("*/s", "'*' is accepted only as the session"),
        ("app/*/o", "the wildcard session '*' takes no object id"),
        ("app/s/*", "'*' is accepted only as the session"),
    ],
)
def test_keys_flame_refuses(text: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid object key") as info:
        ObjectKey.parse(text)
    assert why in info.value.message


def test_tickets() -> None:
    assert parse_ticket(b"app/s/o:7") == (KEY.__class__("app", "s", "o"), 7)
    assert parse_ticket(b"app/s/o") == (ObjectKey("app", "s", "o"), 0)
    for bad, why in [(b"app/s/o:x", "version 'x' is not a whole number"), (b"\xff", "not UTF-8"), (b"app/s:1", "")]:
        with pytest.raises(InvalidArgument, match="invalid") as info:
            parse_ticket(bad)
        assert why in info.value.message


def test_versions_patches_and_what_a_holder_of_each_version_gets() -> None:
    s = store()
    assert s.put(KEY, data=value(b"base")).version == 1
    assert s.put(KEY, data=value(b"base2")).version == 2  # an update: a new base
    for i in range(3):
        assert s.patch(KEY, value(f"p{i}".encode())).version == 3 + i
    obj = s.get(KEY)
    assert (obj.version, [p.version for p in obj.patches]) == (2, [3, 4, 5])

    def kinds(since: int) -> list[tuple[int, str]]:
        _, batches = obj.response(since)
        return [(b.column(0)[0].as_py(), b.column(1)[0].as_py()) for b in batches]

    assert kinds(5) == []  # current: nothing new
    assert kinds(3) == [(4, "patch"), (5, "patch")]
    assert kinds(0) == [(2, "base"), (3, "patch"), (4, "patch"), (5, "patch")]
    assert kinds(1) == kinds(0)  # older than the base: the whole object
    assert kinds(9) == kinds(0)  # newer than the server's: the whole object
    assert s.put(KEY, data=value(b"base3")).version == 6 and s.get(KEY).patches == []


def test_prefix_put_generates_ids_and_patch_and_get_need_an_object() -> None:
    s = store()
    first = s.put(ObjectKey.parse("app/s"), data=value(b"1"))
    second = s.put(ObjectKey.parse("app/s"), data=value(b"2"))
    assert first.key != second.key and first.key.startswith("app/s/")
    with pytest.raises(NotFound, match="object app/s/missing not found: put it before patching it"):
        s.patch(ObjectKey.parse("app/s/missing"), value(b"x"))
    with pytest.raises(NotFound, match="object app/s/missing not found"):
        s.get(ObjectKey.parse("app/s/missing"))
    s.put(KEY, table=pa.table({"x": [1]}))
    with pytest.raises(InvalidState, match="is an Arrow table"):
        s.patch(KEY, value(b"x"))


def test_delete_by_key_session_and_application() -> None:
    s = store()
    keys = ["a/s1/o1", "a/s1/o2", "a/s2/o1", "b/s1/o1"]
    for key in keys:
        s.put(ObjectKey.parse(key), data=value(b"v"))
    assert s.delete(ObjectKey.parse("a/s1/o1")) == 1
    assert s.delete(ObjectKey.parse("a/s1")) == 1
    assert s.delete(ObjectKey.parse("a/*")) == 1
    assert [i.key for i in s.list()] == ["b/s1/o1"]


def test_size_limit_names_the_setting() -> None:
    s = store()
    with pytest.raises(InvalidArgument, match=r"over the cache's limit of 1048576 bytes \(cache.max_object_size\)"):
        s.put(KEY, data=value(b"x" * (1024**2 + 1)))
    assert s.list() == []


def test_lru_eviction_in_memory_drops_objects_and_on_disk_keeps_them(tmp_path: Path) -> None:
    memory = store(max_objects=2)
    for name in ("o1", "o2", "o3"):
        memory.put(ObjectKey("a", "s", name), data=value(b"v"))
    memory.get(ObjectKey("a", "s", "o2"))
    memory.put(ObjectKey("a", "s", "o4"), data=value(b"v"))
    assert [i.key for i in memory.list()] == ["a/s/o2", "a/s/o4"]  # o1 then o3, least recently used

    disk = store(tmp_path, max_memory=3000)
    for name in ("o1", "o2", "o3"):
        disk.put(ObjectKey("a", "s", name), data=value(b"v" * 1000))
    assert disk.resident_bytes <= 3000 and len(disk.list()) == 3
    assert disk.get(ObjectKey("a", "s", "o1")).data.to_pylist() == [b"v" * 1000]  # type: ignore[union-attr]


def test_fs_storage_survives_a_restart_in_flames_layout(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.put(KEY, data=value(b"base"))
    s.patch(KEY, value(b"p1"))
    table_key = ObjectKey("app", "s", "table")
    s.put(table_key, table=pa.table({"x": [1, 2]}))
    assert (tmp_path / "app/s/obj.arrow").is_file() and (tmp_path / "app/s/obj.deltas/2.arrow").is_file()

    again = store(tmp_path)
    assert again.load() == 2
    obj = again.get(KEY)
    assert (obj.version, obj.current_version, obj.data.to_pylist()) == (1, 2, [b"base"])  # type: ignore[union-attr]
    assert again.get(table_key).table.column("x").to_pylist() == [1, 2]  # type: ignore[union-attr]
    assert again.patch(KEY, value(b"p2")).version == 3


def test_leftovers_of_an_interrupted_write_are_removed_at_start(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.put(KEY, data=value(b"kept"))
    (tmp_path / "app/s/.tmp-half.arrow.123").write_bytes(b"ARROW1 half")
    (tmp_path / "app/s/obj.deltas").mkdir()
    (tmp_path / "app/s/obj.deltas/.tmp-2.arrow.9").write_bytes(b"half")
    again = store(tmp_path)
    assert again.load() == 1
    assert sorted(p.name for p in (tmp_path / "app/s").rglob("*")) == ["obj.arrow", "obj.deltas"]


def test_a_full_disk_is_reported_and_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = store(tmp_path)
    s.put(KEY, data=value(b"v1"))
    real = pa.OSFile
    # /dev/full answers every write with ENOSPC, as a full disk does.
    monkeypatch.setattr(pa, "OSFile", lambda path, mode="rb": real("/dev/full", mode))
    with pytest.raises(Unavailable, match=f"cache storage fs://{tmp_path} is full: obj.arrow was not stored"):
        s.put(KEY, data=value(b"v2" * 10000))
    monkeypatch.undo()
    assert s.get(KEY).data.to_pylist() == [b"v1"] and s.info(KEY).version == 1  # type: ignore[union-attr]
    again = store(tmp_path)
    again.load()
    assert again.get(KEY).data.to_pylist() == [b"v1"]  # type: ignore[union-attr]
    assert [p.name for p in (tmp_path / "app/s").iterdir()] == ["obj.arrow"]


def test_storage_urls() -> None:
    assert isinstance(open_storage("none"), NoneStorage)
    for bad in ("s3://bucket", "fs://", "/plain/path"):
        with pytest.raises(InvalidArgument, match="expected none, fs:///absolute/dir"):
            open_storage(bad)
