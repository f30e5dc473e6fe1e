"""flamepy 0.6.0's Runner, unmodified, against our cluster: flmrun, installer: python, the object cache.

A user's project (tests/integration/runner_project, copied to a temporary directory because the
Runner packages its working directory) is run by a separate Python process, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flame
from flame.testing import LocalCluster

PROJECT = Path(__file__).parent / "runner_project"


def run_in_project(endpoints: tuple[str, str], project: Path, home: Path, script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` against the cluster at ``endpoints`` (session manager, object cache)."""
    env = {
        **os.environ,
        "FLAME_ENDPOINT": endpoints[0],
        "FLAME_CACHE_ENDPOINT": endpoints[1],
        "HOME": str(home),  # no ~/.flame/flame.yaml of the user running the tests
        "PYTHONPATH": str(project),
    }
    done = subprocess.run(
        [sys.executable, script, *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


@pytest.fixture(scope="module")
def runner_cluster() -> Iterator[LocalCluster]:
    with LocalCluster(executors=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def seen(runner_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    project = tmp_path_factory.mktemp("runner") / "project"
    shutil.copytree(PROJECT, project)
    endpoints = (runner_cluster.endpoint, runner_cluster.cache_endpoint)
    return run_in_project(endpoints, project, project.parent, "run_runner.py", "runner-demo")


def test_flmrun_is_a_builtin_application(runner_cluster: LocalCluster) -> None:
    with flame.connect(runner_cluster.endpoint) as conn:
        app = conn.get_application("flmrun")
    assert app is not None and app.spec.installer == "python"


def test_a_function_with_100_calls(seen: dict[str, Any]) -> None:
    assert seen["registered"] is True
    assert seen["function_100"] == [i * i for i in range(100)]


def test_an_instance_keeps_its_state_across_calls(seen: dict[str, Any]) -> None:
    assert seen["instance_state"] == [1, 3, 6]


def test_a_class(seen: dict[str, Any]) -> None:
    assert seen["class"] == "hello flame"


def test_objectref_arguments_and_results(seen: dict[str, Any]) -> None:
    assert seen["objectref_arg"] == 10
    assert seen["objectref_result_type"] == "ObjectRef"
    assert seen["objectref_result"] == 10
    assert seen["objectfuture_arg"] == 100


def test_wait_and_select(seen: dict[str, Any]) -> None:
    assert seen["wait"] == [0, 1, 2]
    assert seen["select"] == [0, 1, 2, 3]


def test_a_dependency_declared_by_the_pyproject_is_installed_for_the_service(
    seen: dict[str, Any], runner_cluster: LocalCluster
) -> None:
    assert seen["dependency"].split() == ["1", "2", "3", "4"]
    packages = runner_cluster.data_dir / "executors" / "packages"
    assert Path(seen["dependency_file"]).is_relative_to(packages)


def test_a_remote_exception_comes_back_with_its_message(seen: dict[str, Any]) -> None:
    assert seen["exception"] is not None and "remote explosion on 7" in seen["exception"]


def test_the_application_is_unregistered_when_the_runner_closes(
    seen: dict[str, Any], runner_cluster: LocalCluster
) -> None:
    assert seen["unregistered"] is True
    with flame.connect(runner_cluster.endpoint) as conn:
        assert conn.get_application("runner-demo") is None


def test_the_runner_works_on_a_token_secured_cluster_through_the_flamepy_listeners(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from tests.integration.auth_helpers import write_tokens

    home = tmp_path_factory.mktemp("secured")
    auth = {
        "mode": "token",
        "tokens_file": str(write_tokens(home / "tokens.yaml")),
        "flamepy_endpoint": "http://127.0.0.1:0",
        "flamepy_role": "admin",  # the Runner registers its application
    }
    cache = {"flamepy_endpoint": "grpc://127.0.0.1:0"}
    with LocalCluster(executors=2, cluster={"auth": auth}, cache=cache) as cluster:
        assert cluster.cluster is not None and cluster.cluster.object_cache is not None
        with pytest.raises(flame.Unauthenticated), flame.connect(cluster.endpoint) as conn:
            conn.list_applications()  # the main listeners want a token
        project = home / "project"
        shutil.copytree(PROJECT, project)
        flamepy_listeners = (
            f"http://127.0.0.1:{cluster.cluster.session_manager.flamepy_port}",
            cluster.cluster.object_cache.flamepy_endpoint,
        )
        seen = run_in_project(flamepy_listeners, project, home, "run_runner.py", "runner-secured")
    assert seen["function_100"] == [i * i for i in range(100)]
    assert seen["objectref_arg"] == 10 and seen["objectref_result"] == 10 and seen["objectfuture_arg"] == 100
    assert seen["unregistered"] is True
