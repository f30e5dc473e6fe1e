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

from flame.auth import Authenticator, FixedIdentity, Identity, Role, TokenAuthenticator
from flame.config import CacheConfig, CacheEndpoint
from flame.errors import InvalidArgument, Unavailable
from flame.object_cache.auth import CacheGuard, LocalOwners, Ownership, SessionOwner
from flame.object_cache.eviction import EvictionConfig
from flame.object_cache.owners import SessionManagerOwners
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

    def __init__(
        self, config: CacheConfig, authenticator: Authenticator | None = None, owners: SessionOwner | None = None
    ) -> None:
        """``authenticator``: who may call (default: by ``config.auth``; ``flame up`` shares its
        session manager's, so one SIGHUP reloads both). With ``user_sessions: own`` a user reaches
        only the objects of its own sessions: ``owners`` tells who owns a session in this process
        (``flame up``); without it, with token authentication, the cache asks the session manager
        of ``config.session_manager`` (on ``start()``)."""
        self.config = config
        self.storage = open_storage(config.storage)
        eviction = EvictionConfig(config.eviction_policy, config.max_memory, config.max_objects)
        self.store = ObjectStore(self.storage, eviction, config.max_object_size)
        self._tokens: TokenAuthenticator | None = None
        if authenticator is None and config.auth.mode == "token":
            assert config.auth.tokens_file is not None  # the config refuses token mode without one
            authenticator = self._tokens = TokenAuthenticator(config.auth.tokens_file)  # InvalidArgument if bad
        self._authenticator = authenticator
        checks_callers = authenticator is not None and config.auth.user_sessions == "own"
        self._ownership = Ownership(LocalOwners(owners)) if owners is not None and checks_callers else None
        self._asks: SessionManagerOwners | None = None  # made on start(): the session manager's channels
        self._server: CacheFlightServer | None = None
        self._flamepy: CacheFlightServer | None = None
        self._stopped = threading.Event()
        self.endpoint = ""
        self.flamepy_endpoint = ""  # where the flamepy listener serves, when config.flamepy_endpoint is set

    def reload(self) -> bool:
        """Re-read the tokens file (SIGHUP); False when this cache has none of its own or it was refused."""
        if self._tokens is None:
            logger.info("SIGHUP: nothing to reload (cluster.auth.mode is %s)", self.config.auth.mode)
            return False
        reloaded = self._tokens.reload()
        if reloaded and self._asks is not None:
            self._asks.forget()  # what the session manager said about the old tokens
        return reloaded

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
            tls = [
                flight.CertKeyPair(_read(self.config.cert_file, "cache.tls"), _read(self.config.key_file, "cache.tls"))
            ]
        client_ca = _read(self.config.client_ca_file, "cache.tls.ca_file") if self.config.client_ca_file else None
        self._ask_the_session_manager()
        guard = CacheGuard(self._authenticator, "cache") if self._authenticator is not None else None
        try:
            self._server = _listen(scheme, host, ep.port, self.store, tls, guard, client_ca, self._ownership)
        except BaseException:
            self.shutdown()  # never leave the session manager's channels behind
            raise
        self.endpoint = self._server.public
        if self.config.flamepy_endpoint is not None:
            try:
                self._flamepy = self._listen_for_flamepy(self.config.flamepy_endpoint)
            except BaseException:
                self.shutdown()  # never leave the main listener behind
                raise
            self.flamepy_endpoint = self._flamepy.public
        if self.config.auth.mode == "mtls" and client_ca is None:
            logger.warning("cluster.auth.mode is mtls but the object cache on loopback checks no certificates")
        logger.info(
            "object cache serving at %s%s, storage %s",
            self.endpoint,
            f" (flamepy: {self.flamepy_endpoint})" if self.flamepy_endpoint else "",
            self.storage.url,
        )

    def _ask_the_session_manager(self) -> None:
        """A standalone cache with ``user_sessions: own`` and tokens asks the session manager who owns a session."""
        address = self.config.session_manager
        if self._ownership is not None or self._authenticator is None:
            return
        if address is None:
            if self.config.auth.mode == "mtls" and self.config.auth.user_sessions == "own":
                logger.warning(
                    "cluster.auth.mode is mtls: this object cache checks roles only and cannot hold users to their "
                    "own sessions (it cannot pass a client certificate on to the session manager)"
                )
            return
        ca = _read(address.ca_file, "cluster.tls.ca_file") if address.ca_file else None
        self._asks = SessionManagerOwners(address, ca)
        self._ownership = Ownership(self._asks)
        logger.info(
            "users reach their own sessions' objects only: asking the session manager at %s", self._asks.endpoint
        )

    def _listen_for_flamepy(self, endpoint: CacheEndpoint) -> CacheFlightServer:
        """No credentials asked; every call is identity ``flamepy`` with cluster.auth.flamepy_role."""
        role = Role(self.config.auth.flamepy_role)
        flamepy = FixedIdentity(Identity("flamepy", role, "flamepy listener"))
        guard = CacheGuard(flamepy, "cache flamepy listener", flamepy=True)
        return _listen("grpc", endpoint.host, endpoint.port, self.store, [], guard, None, self._ownership)

    def serve(self) -> None:
        """Block until shutdown()."""
        assert self._server is not None, "start() first"
        self._stopped.wait()

    def shutdown(self) -> None:
        servers = [s for s in (self._flamepy, self._server) if s is not None]
        self._server = self._flamepy = None
        for server in servers:
            server.shutdown()
            server.wait()
        if self._asks is not None:  # after the servers: their calls may be asking
            self._asks.close()
            self._asks = None
            self._ownership = None
        if servers:
            logger.info("object cache stopped")
        self._stopped.set()

    def __enter__(self) -> ObjectCache:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InvalidArgument(f"{key}: cannot read {exc.filename!r}: {exc.strerror}") from exc


def _listen(
    scheme: str,
    host: str,
    port: int,
    store: ObjectStore,
    tls: list[flight.CertKeyPair],
    guard: CacheGuard | None,
    client_ca: bytes | None,
    ownership: Ownership | None = None,
) -> CacheFlightServer:
    """A Flight server on ``host:port`` (0: any free port) whose ObjectRefs name where it is reachable."""
    bind = f"[{host}]" if ":" in host else host
    placeholder = f"{scheme}://{bind}:{port}"
    try:
        server = CacheFlightServer(
            placeholder, store, placeholder, tls, guard=guard, client_ca=client_ca, ownership=ownership
        )
    except (OSError, pa.ArrowException) as exc:
        raise Unavailable(f"the object cache cannot listen on {placeholder}: {exc}") from exc
    public_host = _outward_address() if host in ("0.0.0.0", "::") else host
    public_host = f"[{public_host}]" if ":" in public_host else public_host
    server.public = f"{scheme}://{public_host}:{server.port}"
    return server
