"""Endpoints: where a Flame server listens or where a client connects: the session manager's
``http[s]://host:port`` and the object cache's ``grpc[s]://host:port``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from flame.config._values import invalid
from flame.errors import InvalidArgument

DEFAULT_PORT = 8080
DEFAULT_ENDPOINT = f"http://127.0.0.1:{DEFAULT_PORT}"

_ACCEPTED = "http://host:port, https://host:port or host:port (port 0-65535, default 8080)"
_HOST_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$")
_CACHE_ACCEPTED = "grpc://host:port or grpcs://host:port (grpc+tls:// too; port 0-65535, default 9090)"
_CACHE_SCHEMES = {"grpc": False, "http": False, "grpcs": True, "grpc+tls": True}
_CACHE_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)$")


@dataclass(frozen=True)
class Endpoint:
    """A gRPC endpoint. ``tls`` is true for ``https``; ``port`` 0 asks a server for any free port."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def address(self) -> str:
        """``host:port`` as gRPC expects it (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.address}"


def parse_endpoint(text: str, key: str = "endpoint") -> Endpoint:
    """Parse ``http://host:port``, ``https://host:port`` or ``host:port`` (plain http).

    A missing port means 8080; IPv6 hosts go in brackets (``http://[::1]:8080``).
    ``key`` names the setting in the error message.
    """
    return parse_endpoint_from(text, key, source=None)


def parse_endpoint_from(text: object, key: str, source: str | None) -> Endpoint:
    """:func:`parse_endpoint`, with the error message prefixed by where ``text`` came from."""
    where = f"{source}: " if source else ""

    def fail(problem: str) -> InvalidArgument:
        return InvalidArgument(f"{where}invalid {key} {text!r}: {problem}; expected {_ACCEPTED}")

    if not isinstance(text, str) or not text.strip():
        raise fail("not a non-empty string")
    scheme, sep, rest = text.strip().partition("://")
    if not sep:
        scheme, rest = "http", scheme
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise fail(f"scheme {scheme!r} is not supported")
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(char in rest for char in "/?#@"):
        raise fail("a path, query or user name is not accepted")
    if rest.count(":") > 1 and not rest.startswith("["):
        raise fail("an IPv6 address goes in brackets, e.g. [::1]:8080")
    host, port_text = _split_host_port(rest)
    if not host:
        raise fail("the host is missing")
    if not (_IPV6_RE.match(host) if ":" in host else _HOST_RE.match(host)):
        raise fail(f"{host!r} is not a valid host name or IP address")
    if port_text is None:
        return Endpoint(scheme, host, DEFAULT_PORT)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise fail(f"port {port_text!r} is not a number in 0-65535")
    return Endpoint(scheme, host, int(port_text))


def _split_host_port(text: str) -> tuple[str, str | None]:
    """``host:port``, ``host``, ``[v6]:port`` or ``[v6]`` -> (host, port or None)."""
    if text.startswith("["):
        host, bracket, after = text[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            return "", None
        return host, after[1:] if after else None
    host, colon, port = text.partition(":")
    return host, port if colon else None


@dataclass(frozen=True)
class CacheEndpoint:
    """An object cache's Arrow Flight endpoint; ``tls`` for ``grpcs://`` (or ``grpc+tls://``)."""

    host: str
    port: int
    tls: bool

    @property
    def location(self) -> str:
        """As pyarrow.flight writes it: ``grpc://host:port`` or ``grpc+tls://host:port``."""
        return f"{'grpc+tls' if self.tls else 'grpc'}://{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.location


def parse_cache_endpoint(text: object, key: str, source: str) -> CacheEndpoint:
    if not isinstance(text, str) or not text.strip():
        raise invalid(source, key, text, _CACHE_ACCEPTED)
    scheme, sep, rest = text.strip().rstrip("/").partition("://")
    if not sep or scheme.lower() not in _CACHE_SCHEMES:
        raise invalid(source, key, text, _CACHE_ACCEPTED)
    host, colon, port_text = rest.rpartition(":")
    if not colon or rest.endswith("]"):
        host, port_text = rest, "9090"
    if not host or not _CACHE_HOST_RE.match(host) or not port_text.isdigit() or int(port_text) > 65535:
        raise invalid(source, key, text, _CACHE_ACCEPTED)
    return CacheEndpoint(host.strip("[]"), int(port_text), _CACHE_SCHEMES[scheme.lower()])
