"""The object cache process: config -> storage, store, Flight server; start / serve / shutdown."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import socket
import struct
import threading
from types import TracebackType

import pyarrow as pa
import pyarrow.flight as flight

from flame.config import CacheConfig
from flame.errors import InvalidArgument, Unavailable
from flame.object_cache.eviction import EvictionConfig
from flame.object_cache.server import CacheFlightServer
from flame.object_cache.storage import open_storage
from flame.object_cache.store import ObjectStore

logger = logging.getLogger(__name__)

_SIOCGIFADDR = 0x8915


def interface_address(pattern: str) -> str:
    """The IPv4 address of the first network interface whose name matches ``pattern`` (Flame's rule)."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise InvalidArgument(f"invalid cache.network_interface {pattern!r}: not a regular expression: {exc}") from None
    names = [name for _, name in socket.if_nameindex()]
    for name in names:
        if not regex.search(name):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
            packed = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            return socket.inet_ntoa(packed[20:24])
    raise InvalidArgument(
        f"invalid cache.network_interface {pattern!r}: no interface with an IPv4 address matches; "
        f"interfaces here: {', '.join(names) or 'none'}"
    )


def _outward_address() -> str:
    """This host's address on its default route (no packet is sent), else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            return str(sock.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class ObjectCache:
    """``start()`` binds (port 0: any free port, see ``endpoint``); ``serve()`` blocks; ``shutdown()``."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.storage = open_storage(config.storage)
        eviction = EvictionConfig(config.eviction_policy, config.max_memory, config.max_objects)
        self.store = ObjectStore(self.storage, eviction, config.max_object_size)
        self._server: CacheFlightServer | None = None
        self._stopped = threading.Event()
        self.endpoint = ""

    def start(self) -> None:
        loaded = self.store.load()
        if loaded:
            logger.info("loaded %d object(s) from %s", loaded, self.storage.url)
        ep = self.config.endpoint
        host = interface_address(self.config.network_interface) if self.config.network_interface else ep.host
        scheme = "grpc+tls" if ep.tls else "grpc"
        tls = []
        if ep.tls:
            assert self.config.cert_file is not None and self.config.key_file is not None
            try:
                with open(self.config.cert_file, "rb") as cert, open(self.config.key_file, "rb") as key:
                    tls = [flight.CertKeyPair(cert.read(), key.read())]
            except OSError as exc:
                raise InvalidArgument(f"cache.tls: cannot read {exc.filename!r}: {exc.strerror}") from exc
        bind = f"[{host}]" if ":" in host else host
        placeholder = f"{scheme}://{bind}:{ep.port}"
        try:
            self._server = CacheFlightServer(placeholder, self.store, placeholder, tls)
        except (OSError, pa.ArrowException) as exc:
            raise Unavailable(f"the object cache cannot listen on {placeholder}: {exc}") from exc
        public_host = _outward_address() if host in ("0.0.0.0", "::") else host
        public_host = f"[{public_host}]" if ":" in public_host else public_host
        self.endpoint = self._server.public = f"{scheme}://{public_host}:{self._server.port}"
        logger.info("object cache serving at %s, storage %s", self.endpoint, self.storage.url)

    def serve(self) -> None:
        """Block until shutdown()."""
        assert self._server is not None, "start() first"
        self._stopped.wait()

    def shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.wait()
            logger.info("object cache stopped")
        self._stopped.set()

    def __enter__(self) -> ObjectCache:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()
