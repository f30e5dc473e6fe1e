"""What the session manager's core is told (events) and what it asks for in return (effects).

The core (flame.session_manager.core) turns one event into a list of effects and does no I/O
itself; the controller (flame.session_manager.controller) performs the effects in order: it
commits records, sends commands down node links, and tells watchers, always only after the
commit that stored what they are told. An event a commit carries (``Commit.then``) goes back
to the core once that commit succeeds, ``Commit.undo`` once it fails, so every "commit, then
apply" and "commit, then publish" runs through that one path.

Named tuples, not dataclasses: several are made per batch of tasks on the hot path, where a
tuple is the cheapest immutable record Python has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from flame.types import Application, ApplicationSpec, ResourceRequirement, Session, SessionSpec, Task

if TYPE_CHECKING:
    from flame.protocol import backend_pb2
    from flame.session_manager.records import SessionRecord
    from flame.session_manager.scheduler import Decision
    from flame.session_manager.storage import Record, StoredState


# ---- events: requests from clients ------------------------------------------------------------


class RegisterApplication(NamedTuple):
    name: str
    spec: ApplicationSpec


class UpdateApplication(NamedTuple):
    name: str
    spec: ApplicationSpec


class UnregisterApplication(NamedTuple):
    name: str


class CreateSession(NamedTuple):
    session_id: str  # empty: the core names it
    spec: SessionSpec


class SetSessionWeight(NamedTuple):
    session_id: str
    weight: float


class CloseSession(NamedTuple):
    session_id: str


class DeleteSession(NamedTuple):
    session_id: str


class CreateTasks(NamedTuple):
    session_id: str
    inputs: list[bytes | None]


class CancelTasks(NamedTuple):
    session_id: str
    task_ids: list[str]


# ---- events: from executor managers, the scheduler and providers -------------------------------


class NodeConnected(NamedTuple):
    register: backend_pb2.RegisterNode
    link: object  # the stream's handle; the core compares it, the controller sends through it


class NodeDisconnected(NamedTuple):
    node: str
    link: object


class NodeMessage(NamedTuple):
    node: str
    message: backend_pb2.AgentMessage


class CheckNodes(NamedTuple):
    now: int  # ms since the epoch


class LoseNode(NamedTuple):
    node: str
    reason: str


class ApplyDecision(NamedTuple):
    decision: Decision


class SessionEvent(NamedTuple):
    session_id: str
    code: int
    message: str


class GiveUp(NamedTuple):
    """The session can never get an executor: record why and fail its pending tasks."""

    session_id: str
    code: int
    reason: str


class Recovered(NamedTuple):
    stored: StoredState


# ---- events: a commit's outcome, handed back by the controller ---------------------------------


class ApplicationStored(NamedTuple):
    app: Application


class ApplicationDeleted(NamedTuple):
    name: str


class SessionStored(NamedTuple):
    session: Session


class WeightStored(NamedTuple):
    session_id: str
    weight: float


class CloseStored(NamedTuple):
    session_id: str
    closed_at: int
    written: frozenset[str]  # the pending tasks the commit wrote as cancelled


class CloseFailed(NamedTuple):
    session_id: str


class SessionDeleted(NamedTuple):
    session_id: str


class TasksNotStored(NamedTuple):
    """A creation that failed to commit: the tasks are forgotten again."""

    session_id: str
    task_ids: frozenset[str]


class TasksStored(NamedTuple):
    """Task changes committed: watchers may hear of those still in the state that was written."""

    session_id: str
    tasks: list[Task]
    states: list[int]


Event = (
    RegisterApplication
    | UpdateApplication
    | UnregisterApplication
    | CreateSession
    | SetSessionWeight
    | CloseSession
    | DeleteSession
    | CreateTasks
    | CancelTasks
    | NodeConnected
    | NodeDisconnected
    | NodeMessage
    | CheckNodes
    | LoseNode
    | ApplyDecision
    | SessionEvent
    | GiveUp
    | Recovered
    | ApplicationStored
    | ApplicationDeleted
    | SessionStored
    | WeightStored
    | CloseStored
    | CloseFailed
    | SessionDeleted
    | TasksNotStored
    | TasksStored
)


# ---- effects ----------------------------------------------------------------------------------


class Commit(NamedTuple):
    """Store ``records``; then hand ``then`` to the core, or ``undo`` if the commit failed.

    ``ack``: the caller's reply waits for this commit (and fails with its error).
    """

    records: tuple[Record, ...]
    then: Event | None = None
    undo: Event | None = None
    ack: bool = False


class Notify(NamedTuple):
    """Tell watchers (and the controller's hooks) of committed task changes."""

    rec: SessionRecord
    tasks: list[Task]


class EndWatches(NamedTuple):
    """The session is finished or gone: end its watchers' streams."""

    session_id: str


class Kick(NamedTuple):
    """Ask the scheduler for a cycle now."""


class Registered(NamedTuple):
    link: object
    heartbeat_interval_ms: int


class CreateOnNode(NamedTuple):
    link: object
    executor_id: str
    resreq: ResourceRequirement


class BindOnNode(NamedTuple):
    link: object
    executor_id: str
    session: Session
    app: Application
    task_timeout: float | None


class RunOnNode(NamedTuple):
    link: object
    executor_id: str
    tasks: list[Task]


class UnbindOnNode(NamedTuple):
    link: object
    executor_id: str


class ReleaseOnNode(NamedTuple):
    link: object
    executor_id: str


class CloseLink(NamedTuple):
    link: object


Effect = (
    Commit
    | Notify
    | EndWatches
    | Kick
    | Registered
    | CreateOnNode
    | BindOnNode
    | RunOnNode
    | UnbindOnNode
    | ReleaseOnNode
    | CloseLink
)


class Effects(list[Effect]):
    """The effects of one event, in order, and what the event's caller gets back (``value``)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        super().__init__()
        self.value: object = None
