"""The executor manager's end of flame.ext.v1.InstanceExt.Invoke: tasks out in batches, results back.

Services written with our SDK serve it; any other service (an unmodified flamepy one) answers
UNIMPLEMENTED, and :func:`open_task_stream` returns None so the executor uses OnTaskInvoke.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from flame.protocol import ext_pb2, ext_pb2_grpc, shim_pb2

logger = logging.getLogger(__name__)

_BATCH_KEY = "flame-batch"


class TaskStream:
    """One open Invoke call. One writer (the executor's worker) and one reader (its result task)."""

    def __init__(self, call: Any) -> None:
        self._call = call

    async def send(self, tasks: list[shim_pb2.TaskContext]) -> None:
        """Queue ``tasks`` at the service; raises grpc.RpcError (or UsageError) once the call is broken."""
        await self._call.write(ext_pb2.InvokeBatch(tasks=tasks))

    async def results(self) -> AsyncIterator[ext_pb2.ResultBatch]:
        """Result batches until the call ends; raises grpc.RpcError if it breaks."""
        async for batch in self._call:
            yield batch

    def close(self) -> None:
        self._call.cancel()


async def open_task_stream(channel: Any) -> TaskStream | None:
    """Open the streamed invoke on ``channel``; None when the service does not serve it."""
    call = ext_pb2_grpc.InstanceExtStub(channel).Invoke()
    try:
        metadata = await call.initial_metadata()
    except grpc.RpcError:
        call.cancel()
        return None
    if call.done() or not any(key == _BATCH_KEY for key, _ in (metadata or ())):
        call.cancel()
        logger.debug("service does not serve flame.ext.v1.InstanceExt; using OnTaskInvoke")
        return None
    return TaskStream(call)


__all__ = ["TaskStream", "open_task_stream"]
