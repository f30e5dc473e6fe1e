"""flame.v1.Frontend (Flame's client API) and flame.ext.v1.FrontendExt (our fast path)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from flame.errors import FlameError, InvalidArgument, NotFound
from flame.protocol import (
    abort_with,
    application_spec_from_pb,
    application_to_pb,
    executor_to_pb,
    ext_pb2,
    ext_pb2_grpc,
    frontend_pb2,
    frontend_pb2_grpc,
    node_to_pb,
    session_spec_from_pb,
    session_to_pb,
    task_to_pb,
    types_pb2,
)
from flame.session_manager.controller import Controller

logger = logging.getLogger(__name__)
T = TypeVar("T")

_OK = types_pb2.Result(return_code=0)


async def _call(context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work``; a FlameError becomes the matching gRPC status with its message."""
    try:
        return await work()
    except FlameError as exc:
        await abort_with(context, exc)


def _require(value: str, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{what} is required")
    return value


class FrontendService(frontend_pb2_grpc.FrontendServicer):
    def __init__(self, controller: Controller) -> None:
        self.c = controller

    async def RegisterApplication(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            if not request.HasField("application"):
                raise InvalidArgument("application spec is required")
            await self.c.register_application(request.name, application_spec_from_pb(request.application))
            return _OK

        return await _call(context, work)

    async def UpdateApplication(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            if not request.HasField("application"):
                raise InvalidArgument("application spec is required")
            await self.c.update_application(request.name, application_spec_from_pb(request.application))
            return _OK

        return await _call(context, work)

    async def UnregisterApplication(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            await self.c.unregister_application(request.name)
            return _OK

        return await _call(context, work)

    async def GetApplication(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            return application_to_pb(self.c.get_application(request.name))

        return await _call(context, work)

    async def ListApplication(self, request: Any, context: Any) -> Any:
        apps = sorted(self.c.applications.values(), key=lambda a: a.name)
        return types_pb2.ApplicationList(applications=[application_to_pb(a) for a in apps])

    async def ListExecutor(self, request: Any, context: Any) -> Any:
        executors = sorted(self.c.executors.values(), key=lambda e: e.id)
        return types_pb2.ExecutorList(executors=[executor_to_pb(e.executor) for e in executors])

    async def ListNodes(self, request: Any, context: Any) -> Any:
        nodes = sorted(self.c.nodes.values(), key=lambda n: n.node.name)
        return types_pb2.NodeList(nodes=[node_to_pb(n.node) for n in nodes])

    async def GetNode(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            rec = self.c.nodes.get(_require(request.name, "node name"))
            if rec is None:
                raise NotFound(f"node <{request.name}> not found")
            return frontend_pb2.GetNodeResponse(node=node_to_pb(rec.node))

        return await _call(context, work)

    async def CreateSession(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            if not request.HasField("session"):
                raise InvalidArgument("session spec is required")
            session = await self.c.create_session(request.session_id, session_spec_from_pb(request.session))
            return session_to_pb(session)

        return await _call(context, work)

    async def OpenSession(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            spec = session_spec_from_pb(request.session) if request.HasField("session") else None
            session = await self.c.open_session(_require(request.session_id, "session_id"), spec)
            return session_to_pb(session)

        return await _call(context, work)

    async def GetSession(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            return session_to_pb(self.c.get_session_record(request.session_id).session)

        return await _call(context, work)

    async def ListSession(self, request: Any, context: Any) -> Any:
        return types_pb2.SessionList(sessions=[session_to_pb(r.session) for r in self.c.sessions.values()])

    async def CloseSession(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            return session_to_pb(await self.c.close_session(request.session_id))

        return await _call(context, work)

    async def DeleteSession(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            return session_to_pb(await self.c.delete_session(request.session_id))

        return await _call(context, work)

    async def CreateTask(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            spec = request.task
            session_id = _require(spec.session_id, "task.session_id")
            data = spec.input if spec.HasField("input") else None
            (task,) = await self.c.create_tasks(session_id, [data])
            return task_to_pb(task)

        return await _call(context, work)

    async def GetTask(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            return task_to_pb(self.c.get_task(request.session_id, request.task_id))

        return await _call(context, work)

    async def WatchTask(self, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            self.c.get_task(request.session_id, request.task_id)
        except FlameError as exc:
            await abort_with(context, exc)
        async for task in self.c.watch_task(request.session_id, request.task_id):
            yield task_to_pb(task)

    async def ListTask(self, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            rec = self.c.get_session_record(request.session_id)
        except FlameError as exc:
            await abort_with(context, exc)
        for task in list(rec.tasks.values()):
            yield task_to_pb(task)


class FrontendExtService(ext_pb2_grpc.FrontendExtServicer):
    def __init__(self, controller: Controller) -> None:
        self.c = controller

    async def SubmitTasks(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            tasks = await self.c.create_tasks(_require(request.session_id, "session_id"), list(request.inputs))
            first = int(tasks[0].id) if tasks else 0
            return ext_pb2.SubmitTasksResponse(first_task_id=first, count=len(tasks))

        return await _call(context, work)

    async def WatchSession(self, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            self.c.get_session_record(request.session_id)
        except FlameError as exc:
            await abort_with(context, exc)
        # watch_session registers the watcher before returning, so once the client sees the
        # initial metadata, no result of a task it submits afterwards can be missed.
        batches = self.c.watch_session(request.session_id, request.include_completed)
        await context.send_initial_metadata(())
        async for batch in batches:
            yield ext_pb2.TaskBatch(tasks=[task_to_pb(t, with_input=False) for t in batch])

    async def SetSessionWeight(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            session_id = _require(request.session_id, "session_id")
            return session_to_pb(await self.c.set_session_weight(session_id, request.weight))

        return await _call(context, work)

    async def CancelTasks(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            cancelled = await self.c.cancel_tasks(_require(request.session_id, "session_id"), request.task_ids)
            return ext_pb2.CancelTasksResponse(cancelled=[t.id for t in cancelled])

        return await _call(context, work)

    async def ListExecutorDetails(self, request: Any, context: Any) -> Any:
        executors = sorted(self.c.executors.values(), key=lambda e: e.id)
        return ext_pb2.ExecutorDetailList(
            executors=[
                ext_pb2.ExecutorDetail(
                    executor=executor_to_pb(e.executor),
                    log_file=e.executor.log_file,
                    application=e.executor.application,
                )
                for e in executors
            ]
        )
