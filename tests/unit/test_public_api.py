"""The public names of the flame package: pinned, importable, light, and covering flamepy's."""

from __future__ import annotations

import subprocess
import sys

import flame
import flame.client
import flame.service

FLAME_ALL = [
    "AlreadyExists",
    "ApplicationContext",
    "ApplicationSpec",
    "AsyncConnection",
    "AsyncSession",
    "Connection",
    "Executor",
    "FlameError",
    "FlameService",
    "InvalidArgument",
    "InvalidState",
    "NotFound",
    "ObjectRef",
    "PermissionDenied",
    "RemoteError",
    "RemoteTraceback",
    "ResourceRequirement",
    "Session",
    "SessionContext",
    "SessionState",
    "StatefulObject",
    "TaskContext",
    "TaskFailed",
    "TaskState",
    "Unauthenticated",
    "Unavailable",
    "close_session",
    "common",
    "connect",
    "create_session",
    "delete_objects",
    "get_application",
    "get_object",
    "get_session",
    "list_applications",
    "list_executors",
    "list_nodes",
    "list_sessions",
    "open_session",
    "patch_object",
    "put_object",
    "register_application",
    "run",
    "unregister_application",
    "update_object",
]

# flamepy 0.6.0's client and service names that a user moving over calls by the same name.
FLAMEPY_NAMES = [
    "ApplicationContext",
    "Connection",
    "FlameService",
    "ObjectRef",
    "ResourceRequirement",
    "Session",
    "SessionContext",
    "SessionState",
    "TaskContext",
    "TaskState",
    "close_session",
    "connect",
    "create_session",
    "delete_objects",
    "get_application",
    "get_object",
    "get_session",
    "list_applications",
    "list_executors",
    "list_nodes",
    "list_sessions",
    "open_session",
    "patch_object",
    "put_object",
    "register_application",
    "run",
    "unregister_application",
    "update_object",
]


def test_flame_all_is_pinned() -> None:
    assert sorted(flame.__all__) == FLAME_ALL
    assert len(set(flame.__all__)) == len(flame.__all__)


def test_every_exported_name_exists() -> None:
    for module in (flame, flame.client, flame.service):
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{module.__name__} exports missing names {missing}"


def test_flamepy_users_find_the_same_names() -> None:
    assert [name for name in FLAMEPY_NAMES if name not in flame.__all__] == []
    assert [name for name in ("invoke", "run", "close", "common_data") if not hasattr(flame.Session, name)] == []
    assert [
        n for n in ("on_session_enter", "on_task_invoke", "on_session_leave") if not hasattr(flame.FlameService, n)
    ] == []


def test_errors_share_one_root() -> None:
    errors = [flame.InvalidArgument, flame.NotFound, flame.AlreadyExists, flame.InvalidState, flame.Unavailable,
              flame.Unauthenticated, flame.PermissionDenied]  # fmt: skip
    assert all(issubclass(error, flame.FlameError) for error in [*errors, flame.TaskFailed])


def test_importing_flame_loads_no_server_code() -> None:
    script = (
        "import sys, flame\n"
        "servers = [m for m in sys.modules if m.startswith(('flame.session_manager', 'flame.executor_manager',"
        " 'flame.object_cache', 'pyarrow'))]\n"
        "print(servers)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
