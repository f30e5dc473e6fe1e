"""Where the cluster is and how to open a channel to it."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc

from flame.errors import InvalidArgument, Unavailable

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
DEFAULT_PORT = 8080
ENDPOINT_ENV = "FLAME_ENDPOINT"
CA_FILE_ENV = "FLAME_CA_FILE"

_SECURE_SCHEMES = {"https": True, "grpcs": True, "http": False, "grpc": False}
_CHANNEL_OPTIONS = [
    # Result batches of a busy session can be large; the server enforces its own limits.
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


@dataclass(frozen=True)
class Endpoint:
    """A parsed cluster address: ``url`` as the user wrote it, ``target`` as gRPC wants it."""

    url: str
    target: str
    secure: bool
    ca_file: str | None = None


def _resolve_endpoint(endpoint: str | None = None, ca_file: str | None = None) -> Endpoint:
    """The endpoint to use: the argument, else $FLAME_ENDPOINT, else the local default.

    The single place that decides where the cluster is (the flame.yaml loader plugs in here).
    """
    url = endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    return parse_endpoint(url, ca_file or os.environ.get(CA_FILE_ENV) or None)


def parse_endpoint(url: str, ca_file: str | None = None) -> Endpoint:
    """Parse ``http://host:port``, ``https://host:port`` or ``host:port`` (port defaults to 8080)."""
    text = url.strip()
    scheme, sep, _ = text.partition("://")
    if not sep:
        scheme, text = "http", f"http://{text}"
    scheme = scheme.lower()
    if scheme not in _SECURE_SCHEMES:
        raise InvalidArgument(
            f"invalid endpoint {url!r}: unknown scheme {scheme!r}; expected http://host:port, https://host:port "
            "or host:port"
        )
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise InvalidArgument(f"invalid endpoint {url!r}: {exc}; expected e.g. http://127.0.0.1:8080") from exc
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidArgument(f"invalid endpoint {url!r}: expected http://host:port, https://host:port or host:port")
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Endpoint(url=url.strip(), target=target, secure=_SECURE_SCHEMES[scheme], ca_file=ca_file)


def open_channel(endpoint: Endpoint) -> grpc.aio.Channel:
    """A grpc.aio channel to ``endpoint`` (call inside the event loop that will use it)."""
    if not endpoint.secure:
        return grpc.aio.insecure_channel(endpoint.target, options=_CHANNEL_OPTIONS)
    root_certificates = None
    if endpoint.ca_file:
        try:
            with open(endpoint.ca_file, "rb") as file:
                root_certificates = file.read()
        except OSError as exc:
            raise InvalidArgument(f"cannot read CA file {endpoint.ca_file!r}: {exc.strerror}") from exc
    credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
    return grpc.aio.secure_channel(endpoint.target, credentials, options=_CHANNEL_OPTIONS)


def unreachable(endpoint: Endpoint, reason: str) -> Unavailable:
    return Unavailable(
        f"cannot reach the Flame cluster at {endpoint.url} ({reason}); start a local one with `flame up`, "
        f"or point ${ENDPOINT_ENV} at a running session manager"
    )


async def wait_until_ready(channel: grpc.aio.Channel, endpoint: Endpoint, timeout: float) -> None:
    """Return once ``channel`` is connected; raise Unavailable on a failed attempt or after ``timeout``."""
    deadline = time.monotonic() + timeout
    state = channel.get_state(try_to_connect=True)
    while state != grpc.ChannelConnectivity.READY:
        if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
            raise unreachable(endpoint, "connection failed")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise unreachable(endpoint, f"no connection after {timeout:g} s")
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        except asyncio.TimeoutError:
            raise unreachable(endpoint, f"no connection after {timeout:g} s") from None
        state = channel.get_state(try_to_connect=True)
