"""flame.backend.v1.Backend: one bidirectional stream per executor manager."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from flame.protocol import backend_pb2, backend_pb2_grpc
from flame.session_manager.controller import Controller
from flame.session_manager.effects import NodeConnected, NodeDisconnected, NodeMessage
from flame.session_manager.links import NodeLink

logger = logging.getLogger(__name__)


class BackendService(backend_pb2_grpc.BackendServicer):
    def __init__(self, controller: Controller, *, require_client_certificate: bool = False) -> None:
        self.c = controller
        # Mutual TLS: executor managers must come through the port that requires a client
        # certificate signed by cluster.tls.ca_file; the clients' port asks for none.
        self.require_client_certificate = require_client_certificate

    async def Connect(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        if self.require_client_certificate and not context.auth_context().get("x509_pem_cert"):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "executor managers must connect to the mutual TLS port (cluster.tls.backend_port) with a "
                "client certificate signed by the cluster's CA (executor_manager.tls.cert_file and key_file)",
            )
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or not first.HasField("register") or not first.register.name:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must register the node with a name"
            )
        assert first is not None  # abort raised otherwise
        async for message in self.serve_node(first.register, messages):
            yield message

    async def serve_node(
        self, register: backend_pb2.RegisterNode, request_iterator: AsyncIterator[Any]
    ) -> AsyncIterator[backend_pb2.ManagerMessage]:
        """One registered node's stream: its messages in, our commands out (also used in-process)."""
        link = NodeLink(register.name)
        self.c.handle(NodeConnected(register, link))
        reader = asyncio.create_task(self._read(request_iterator, link), name=f"backend-read-{link.node_name}")
        try:
            while True:
                message = await link.next_message()
                if message is None:
                    return
                yield message
        finally:
            link.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # the stream is gone either way
                await reader
            self.c.handle(NodeDisconnected(link.node_name, link))

    async def _read(self, messages: AsyncIterator[Any], link: NodeLink) -> None:
        handle, name = self.c.handle, link.node_name
        try:
            async for message in messages:
                if link.closed:  # replaced by a newer stream of the node, or the node was forgotten
                    return
                handle(NodeMessage(name, message))  # outcomes stored and published once committed
        except grpc.aio.AioRpcError as exc:
            logger.info("stream from node %s ended: %s", name, exc.code())
        finally:
            link.close()
