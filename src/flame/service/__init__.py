"""The service SDK: subclass FlameService, then ``flame.run(MyService())``."""

from flame.service._base import FlameService
from flame.service._context import ApplicationContext, SessionContext, TaskContext
from flame.service._server import INSTANCE_ENDPOINT_ENV, InstanceServer, run

__all__ = [
    "INSTANCE_ENDPOINT_ENV",
    "ApplicationContext",
    "FlameService",
    "InstanceServer",
    "SessionContext",
    "TaskContext",
    "run",
]
