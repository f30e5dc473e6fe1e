"""An application's package: fetched from its ``url``, named by the SHA-256 of its bytes, unpacked safely."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from flame.executor_manager.shims import ShimError

SCHEMES = ("file", "http", "https", "grpc", "grpcs")
_CHUNK = 1 << 20
HTTP_TIMEOUT = 300.0
METADATA = ("pyproject.toml", "setup.py", "setup.cfg")


def fetch(url: str, downloads: Path) -> tuple[Path, str]:
    """Copy the package named by ``url`` under ``downloads``; (its local path, its sha256 hex digest).

    Blocking: run it in a worker thread. ShimError says why the package cannot be had.
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in SCHEMES:
        raise ShimError(f"package url {url!r} has an unsupported scheme: accepted are {', '.join(SCHEMES)}")
    downloads.mkdir(parents=True, exist_ok=True)
    name = PurePosixPath(urllib.parse.unquote(parsed.path)).name or "package"
    handle, temporary = tempfile.mkstemp(prefix="fetch-", suffix=f"-{name}", dir=downloads)
    digest = hashlib.sha256()
    try:
        with open(handle, "wb") as out:
            if parsed.scheme in ("grpc", "grpcs"):
                out.close()
                _from_cache(parsed, url, Path(temporary))
                with Path(temporary).open("rb") as data:
                    while chunk := data.read(_CHUNK):
                        digest.update(chunk)
            elif parsed.scheme == "file":
                source = Path(urllib.parse.unquote(parsed.path))
                try:
                    with source.open("rb") as data:
                        _copy(data, out, digest)
                except OSError as exc:
                    raise ShimError(f"cannot read package {url}: {exc.strerror or exc}") from exc
            else:
                try:
                    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as data:
                        _copy(data, out, digest)
                except OSError as exc:
                    raise ShimError(f"cannot download package {url}: {exc}") from exc
        content = _content_digest(Path(temporary))
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary), content or digest.hexdigest()


def _content_digest(path: Path) -> str | None:
    """For a gzip file, the digest of what it holds: gzip stamps the time it compressed, so packing the
    same files twice (as flamepy's Runner does on every run) gives different bytes but the same tar."""
    with path.open("rb") as data:
        if data.read(2) != b"\x1f\x8b":
            return None
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as data:
            while chunk := data.read(_CHUNK):
                digest.update(chunk)
    except (OSError, EOFError):
        return None  # not really gzip: unpack() will say so
    return digest.hexdigest()


def _from_cache(parsed: urllib.parse.ParseResult, url: str, path: Path) -> None:
    """An object of the object cache, named ``grpc[s]://host:port/<app>/<session>/<object>`` (flamepy's url)."""
    from flame.client import ObjectRef, cache_client
    from flame.errors import FlameError

    endpoint = f"{parsed.scheme}://{parsed.netloc}"
    key = urllib.parse.unquote(parsed.path).lstrip("/")
    if key.count("/") != 2:
        raise ShimError(f"package url {url!r} does not name a cache object (grpc://host:port/<app>/<session>/<object>)")
    try:
        cache_client(endpoint, os.environ.get("FLAME_CA_FILE")).download_object(ObjectRef(endpoint, key, 0), path)
    except FlameError as exc:
        raise ShimError(f"cannot download package {url} from the object cache: {exc.message}") from exc
    except OSError as exc:
        raise ShimError(f"cannot download package {url} from the object cache: {exc}") from exc


def _copy(source: object, out: object, digest: hashlib._Hash) -> None:
    read = source.read  # type: ignore[attr-defined]
    write = out.write  # type: ignore[attr-defined]
    while chunk := read(_CHUNK):
        digest.update(chunk)
        write(chunk)


def unpack(package: Path, url: str, dest: Path) -> Path:
    """Unpack a tar (optionally compressed) or zip archive into ``dest``; the source tree's root.

    A wheel is not unpacked: it is installed as it is, so its path is returned. Members that would
    land outside ``dest`` (absolute paths, ``..``, links out) are refused.
    """
    name = PurePosixPath(urllib.parse.urlparse(url).path).name
    dest.mkdir(parents=True, exist_ok=True)
    if name.endswith(".whl"):
        wheel = dest / name
        shutil.copyfile(package, wheel)
        return wheel
    try:
        if tarfile.is_tarfile(package):
            with tarfile.open(package) as archive:
                _check_members(archive.getnames(), url)
                if hasattr(tarfile, "data_filter"):
                    archive.extractall(dest, filter="data")
                else:  # Python before 3.10.12 / 3.11.4: members were checked above
                    archive.extractall(dest)
        elif zipfile.is_zipfile(package):
            with zipfile.ZipFile(package) as archive:
                _check_members(archive.namelist(), url)
                archive.extractall(dest)
        else:
            raise ShimError(f"package {url} is neither a tar, zip nor wheel archive")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise ShimError(f"cannot unpack package {url}: {exc}") from exc
    return source_root(dest)


def _check_members(names: list[str], url: str) -> None:
    for member in names:
        path = PurePosixPath(member)
        if path.is_absolute() or ".." in path.parts:
            raise ShimError(f"package {url} holds {member!r}, a path outside the package: refused")


def source_root(tree: Path) -> Path:
    """The directory holding the project metadata: ``tree``, or its single top-level directory."""
    if any((tree / name).exists() for name in METADATA):
        return tree
    entries = [entry for entry in tree.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and any((entries[0] / name).exists() for name in METADATA):
        return entries[0]
    return tree


def has_metadata(root: Path) -> bool:
    return root.suffix == ".whl" or any((root / name).exists() for name in METADATA)
