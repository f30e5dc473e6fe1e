"""flame.v1.Frontend (Flame's client API) and flame.ext.v1.FrontendExt (our fast path)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import grpc

from flame.auth import audit
from flame.config import CommandAllowlist, command_line
from flame.errors import FlameError, InvalidArgument, NotFound, PermissionDenied
from flame.protocol import (
    abort_with,
    application_spec_from_pb,
    application_to_pb,
    compact_batch_to_pb,
    executor_to_pb,
    ext_pb2,
    ext_pb2_grpc,
    frontend_pb2,
    frontend_pb2_grpc,
    node_to_pb,
    session_spec_from_pb,
    session_to_pb,
    status_for,
    task_to_pb,
    types_pb2,
)
from flame.session_manager.auth import Access
from flame.session_manager.controller import Controller
from flame.session_manager.records import SessionRecord
from flame.types import ApplicationSpec

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


def _session(controller: Controller, access: Access, session_id: str) -> SessionRecord:
    """The record of ``session_id`` if the caller may use it (NotFound, PermissionDenied otherwise)."""
    rec = controller.get_session_record(session_id)
    access.check(rec.session)
    return rec


class FrontendService(frontend_pb2_grpc.FrontendServicer):
    def __init__(
        self, controller: Controller, access: Access | None = None, commands: CommandAllowlist | None = None
    ) -> None:
        self.c = controller
        self.access = access or Access()
        self.commands = commands or CommandAllowlist()

    def _allowed_spec(self, request: Any, method: str, context: Any) -> ApplicationSpec:
        if not request.HasField("application"):
            raise InvalidArgument("application spec is required")
        spec = application_spec_from_pb(request.application)
        try:
            self.commands.check(request.name, spec, "cluster.applications.allowed_commands")
        except PermissionDenied as exc:
            caller = self.access.caller()
            audit.refused(method, exc.message, caller, context.peer(), authenticating=caller is not None)
            raise
        return spec

    async def RegisterApplication(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            spec = self._allowed_spec(request, "flame.v1.Frontend/RegisterApplication", context)
            await self.c.register_application(request.name, spec)
            detail = f" (command {command_line(spec)!r})"
            audit.application_changed("registered", request.name, detail, self.access.caller(), context.peer())
            return _OK

        return await _call(context, work)

    async def UpdateApplication(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            spec = self._allowed_spec(request, "flame.v1.Frontend/UpdateApplication", context)
            await self.c.update_application(request.name, spec)
            detail = f" (command {command_line(spec)!r})"
            audit.application_changed("updated", request.name, detail, self.access.caller(), context.peer())
            return _OK

        return await _call(context, work)

    async def UnregisterApplication(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            await self.c.unregister_application(request.name)
            audit.application_changed("unregistered", request.name, "", self.access.caller(), context.peer())
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
            spec = replace(session_spec_from_pb(request.session), owner=self.access.owner())
            session = await self.c.create_session(request.session_id, spec)
            return session_to_pb(session)

        return await _call(context, work)

    async def OpenSession(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            session_id = _require(request.session_id, "session_id")
            spec = session_spec_from_pb(request.session) if request.HasField("session") else None
            existing = self.c.sessions.get(session_id)
            if existing is not None:
                self.access.check(existing.session)
            elif spec is not None:
                spec = replace(spec, owner=self.access.owner())
            session = await self.c.open_session(session_id, spec)
            return session_to_pb(session)

        return await _call(context, work)

    async def GetSession(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            return session_to_pb(_session(self.c, self.access, request.session_id).session)

        return await _call(context, work)

    async def ListSession(self, request: Any, context: Any) -> Any:
        sessions = self.access.visible(r.session for r in self.c.sessions.values())
        return types_pb2.SessionList(sessions=[session_to_pb(session) for session in sessions])

    async def CloseSession(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            _session(self.c, self.access, request.session_id)
            return session_to_pb(await self.c.close_session(request.session_id))

        return await _call(context, work)

    async def DeleteSession(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            _session(self.c, self.access, request.session_id)
            return session_to_pb(await self.c.delete_session(request.session_id))

        return await _call(context, work)

    async def CreateTask(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            spec = request.task
            session_id = _require(spec.session_id, "task.session_id")
            _session(self.c, self.access, session_id)
            data = spec.input if spec.HasField("input") else None
            (task,) = await self.c.create_tasks(session_id, [data])
            return task_to_pb(task)

        return await _call(context, work)

    async def GetTask(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            _session(self.c, self.access, request.session_id)
            return task_to_pb(await self.c.get_task(request.session_id, request.task_id))

        return await _call(context, work)

    async def WatchTask(self, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            _session(self.c, self.access, request.session_id)
            await self.c.get_task(request.session_id, request.task_id)
        except FlameError as exc:
            await abort_with(context, exc)
        async for task in self.c.watch_task(request.session_id, request.task_id):
            yield task_to_pb(task)

    async def ListTask(self, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            _session(self.c, self.access, request.session_id)
            tasks = await self.c.list_tasks(request.session_id)
        except FlameError as exc:
            await abort_with(context, exc)
        for task in tasks:
            yield task_to_pb(task)


class FrontendExtService(ext_pb2_grpc.FrontendExtServicer):
    def __init__(self, controller: Controller, access: Access | None = None) -> None:
        self.c = controller
        self.access = access or Access()

    async def _submit(self, request: Any) -> tuple[int, int]:
        """Create the request's tasks: (first task id, count)."""
        session_id = _require(request.session_id, "session_id")
        _session(self.c, self.access, session_id)
        tasks = await self.c.create_tasks(session_id, list(request.inputs))
        return (int(tasks[0].id) if tasks else 0), len(tasks)

    async def SubmitTasks(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            first, count = await self._submit(request)
            return ext_pb2.SubmitTasksResponse(first_task_id=first, count=count)

        return await _call(context, work)

    async def SubmitStream(self, requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        """SubmitTasks, one reply per request in order; a refused request is a reply, not the end."""
        await context.send_initial_metadata(())  # the client learns the stream is served before sending
        async for request in requests:
            try:
                first, count = await self._submit(request)
            except FlameError as exc:
                yield ext_pb2.SubmitReply(code=status_for(exc).value[0], message=exc.message)
                continue
            yield ext_pb2.SubmitReply(first_task_id=first, count=count)

    async def WatchSession(self, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            _session(self.c, self.access, request.session_id)
        except FlameError as exc:
            await abort_with(context, exc)
        # watch_session registers the watcher before returning, so once the client sees the
        # initial metadata, no result of a task it submits afterwards can be missed.
        batches = self.c.watch_session(request.session_id, request.include_completed)
        await context.send_initial_metadata(())
        async for batch in batches:
            if request.compact:
                yield compact_batch_to_pb(batch)
            else:
                yield ext_pb2.TaskBatch(tasks=[task_to_pb(t, with_input=False) for t in batch])

    async def SetSessionWeight(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            session_id = _require(request.session_id, "session_id")
            _session(self.c, self.access, session_id)
            return session_to_pb(await self.c.set_session_weight(session_id, request.weight))

        return await _call(context, work)

    async def CancelTasks(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            session_id = _require(request.session_id, "session_id")
            _session(self.c, self.access, session_id)
            cancelled = await self.c.cancel_tasks(session_id, request.task_ids)
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
