"""flame.backend.v1.Backend: one bidirectional stream per executor manager."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from flame.errors import InvalidState
from flame.protocol import backend_pb2, backend_pb2_grpc
from flame.session_manager.controller import Controller
from flame.session_manager.fleet import Fleet
from flame.session_manager.links import NodeLink
from flame.session_manager.records import NodeRecord
from flame.types import ExecutorState, TaskState

logger = logging.getLogger(__name__)

_EXECUTOR_STATES = frozenset(int(s) for s in ExecutorState)
_FINAL_STATES = frozenset({int(TaskState.SUCCEED), int(TaskState.FAILED)})


class BackendService(backend_pb2_grpc.BackendServicer):
    def __init__(self, controller: Controller, fleet: Fleet, *, require_client_certificate: bool = False) -> None:
        self.c = controller
        self.fleet = fleet
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
        first = backend_pb2.AgentMessage(register=register)
        link = NodeLink(first.register.name)
        node = self.fleet.node_connected(first.register, link)
        reader = asyncio.create_task(self._read(request_iterator, node, link), name=f"backend-read-{link.node_name}")
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
            self.fleet.node_disconnected(node, link)

    async def _read(self, messages: AsyncIterator[Any], node: NodeRecord, link: NodeLink) -> None:
        try:
            async for message in messages:
                self._handle(node, message)
        except grpc.aio.AioRpcError as exc:
            logger.info("stream from node %s ended: %s", link.node_name, exc.code())
        finally:
            link.close()

    def _handle(self, node: NodeRecord, message: backend_pb2.AgentMessage) -> None:
        self.fleet.heartbeat(node)
        for report in message.executors:
            if report.state not in _EXECUTOR_STATES:
                logger.warning("node %s: ignoring a report of executor state %d", node.node.name, report.state)
                continue
            try:
                self.fleet.executor_report(node, report)
            except InvalidState as exc:  # a report out of order: the agent is confused, we need not be
                logger.warning(
                    "node %s: ignoring a report for executor %s: %s", node.node.name, report.executor_id, exc
                )
        outcomes = [o for o in message.outcomes if o.state in _FINAL_STATES]
        if len(outcomes) < len(message.outcomes):
            logger.warning("node %s: ignoring outcomes that are neither Succeed nor Failed", node.node.name)
        if not outcomes:
            return
        self.fleet.task_outcomes(outcomes)  # stored and published once committed; not waited for
