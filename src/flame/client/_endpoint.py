"""Where the cluster is and how to open a channel to it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from flame.client._credentials import bearer_interceptors
from flame.config import load_client_config
from flame.config._auth import read_token
from flame.errors import InvalidArgument, Unavailable

DEFAULT_PORT = 8080
ENDPOINT_ENV = "FLAME_ENDPOINT"

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
    token: str | None = field(default=None, repr=False)  # sent as ``authorization: Bearer <token>``
    cert_file: str | None = None  # a client certificate and key, for mutual TLS
    key_file: str | None = None


def _resolve_endpoint(
    endpoint: str | None = None,
    ca_file: str | None = None,
    *,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    token: str | None = None,
) -> Endpoint:
    """Where the cluster is: the single place that decides it, for the SDK and the CLI.

    The endpoint is the ``endpoint`` argument, else $FLAME_ENDPOINT, else the current context of the
    client config (``config_path``, default ~/.flame/flame.yaml, which may be missing), else
    http://127.0.0.1:8080. The CA file is the ``ca_file`` argument, else $FLAME_CA_FILE, else the
    context's ``cluster.tls.ca_file``. The token is the ``token`` argument, else $FLAME_TOKEN, else
    the file named by $FLAME_TOKEN_FILE, else the context's ``cluster.token`` or ``cluster.token_file``
    (with an explicit ``endpoint``, the context's token is not used). ``env`` defaults to
    ``os.environ``. A bad config file raises InvalidArgument naming the file and the key.
    """
    env = os.environ if env is None else env
    if endpoint and config_path is None:
        explicit = parse_endpoint(endpoint, ca_file)
        if ca_file or not explicit.secure:  # nothing left for a config file to decide
            return replace(
                explicit,
                token=token or read_token(None, None, env, "environment", "token"),
                cert_file=env.get("FLAME_CERT_FILE") if explicit.secure else None,
                key_file=env.get("FLAME_KEY_FILE") if explicit.secure else None,
            )
    config = load_client_config(config_path, env)
    url = endpoint if endpoint else str(config.endpoint)
    resolved = parse_endpoint(url, ca_file or config.ca_file)
    return replace(resolved, token=token or config.token, cert_file=config.cert_file, key_file=config.key_file)


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
    interceptors = bearer_interceptors(endpoint.token) if endpoint.token else None
    if not endpoint.secure:
        return grpc.aio.insecure_channel(endpoint.target, options=_CHANNEL_OPTIONS, interceptors=interceptors)
    root_certificates = _read(endpoint.ca_file, "CA file")
    key, chain = _read(endpoint.key_file, "client key file"), _read(endpoint.cert_file, "client certificate file")
    credentials = grpc.ssl_channel_credentials(root_certificates, private_key=key, certificate_chain=chain)
    return grpc.aio.secure_channel(endpoint.target, credentials, options=_CHANNEL_OPTIONS, interceptors=interceptors)


def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {what} {path!r}: {exc.strerror}") from exc


def unreachable(endpoint: Endpoint, reason: str) -> Unavailable:
    return Unavailable(
        f"cannot reach the Flame cluster at {endpoint.url} ({reason}); start a local one with `flame up`, "
        f"or point ${ENDPOINT_ENV} or ~/.flame/flame.yaml at a running session manager"
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
