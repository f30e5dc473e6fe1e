"""installer: python — packages fetched, installed with their dependencies, cached by digest, cleaned."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

import flame
from flame.executor_manager.installers import PackageEnvironments
from flame.executor_manager.shims import ShimError
from flame.testing import LocalCluster
from flame.types import EVENT_SESSION_BIND_FAILED, ApplicationSpec
from tests.integration.conftest import wait_for

# A tiny pure-Python package from PyPI that nothing else here installs.
DEPENDENCY = "tabulate"

SERVICE = """
import os
import flame
import tabulate

class WhereIsTabulate(flame.FlameService):
    def on_task_invoke(self, context):
        return f"{tabulate.__file__}|{os.environ['FLAME_PACKAGE_DIR']}".encode()

if __name__ == "__main__":
    flame.run(WhereIsTabulate())
"""


def make_package(
    path: Path, *, name: str = "demo", version: str = "0.1.0", dependencies: str | None = None, metadata: bool = True
) -> str:
    """A .tar.gz of a project directory (as flamepy's Runner makes one); its file:// url."""
    deps = dependencies if dependencies is not None else f'["{DEPENDENCY}"]'
    files = {
        "pyproject.toml": textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=61.0"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "{version}"
            dependencies = {deps}

            [tool.setuptools]
            py-modules = []
            """
        ),
        "where_service.py": SERVICE,
        "version.txt": version,
    }
    if not metadata:
        del files["pyproject.toml"]
    with tarfile.open(path, "w:gz") as archive:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return f"file://{path}"


def spec_for(url: str) -> ApplicationSpec:
    return ApplicationSpec(command="${FLAME_PYTHON}", arguments=["-m", "where_service"], url=url, installer="python")


def test_package_is_installed_once_for_concurrent_executors_and_reused(tmp_path: Path) -> None:
    url = make_package(tmp_path / "demo.tar.gz")
    environments = PackageEnvironments(tmp_path / "work")

    async def scenario() -> list[ApplicationSpec]:
        first = await asyncio.gather(*(environments.prepare("demo", spec_for(url), f"e{i}") for i in range(3)))
        later = await environments.prepare("demo", spec_for(url), "e9")
        return [*first, later]

    specs = asyncio.run(scenario())
    assert environments.installs == 1
    paths = {spec.environments["PYTHONPATH"] for spec in specs}
    assert len(paths) == 1
    site = Path(paths.pop().split(":")[0])
    assert (site / f"{DEPENDENCY}").exists() or (site / f"{DEPENDENCY}.py").exists()
    # A new executor manager process on the same work dir finds the environment installed.
    again = PackageEnvironments(tmp_path / "work")
    asyncio.run(again.prepare("demo", spec_for(url), "e10"))
    assert again.installs == 0


def test_a_replaced_package_environment_is_removed(tmp_path: Path) -> None:
    environments = PackageEnvironments(tmp_path / "work")
    old = make_package(tmp_path / "v1.tar.gz", metadata=False)
    new = make_package(tmp_path / "v2.tar.gz", version="0.2.0", metadata=False)

    async def scenario() -> tuple[Path, Path]:
        first = await environments.prepare("demo", spec_for(old), "e1")
        second = await environments.prepare("demo", spec_for(new), "e1")  # e1 rebinds on the new package
        return Path(first.environments["FLAME_PACKAGE_DIR"]), Path(second.environments["FLAME_PACKAGE_DIR"])

    before, after = asyncio.run(scenario())
    assert before != after
    assert not before.exists()
    assert after.exists()


def test_failed_install_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    environments = PackageEnvironments(tmp_path / "work")
    broken = make_package(tmp_path / "broken.tar.gz", dependencies='"not-a-list"')
    with pytest.raises(ShimError) as failure:
        asyncio.run(environments.prepare("demo", spec_for(broken), "e1"))
    message = failure.value.message
    assert "installing the package of application demo failed" in message
    assert "last lines of" in message and "dependencies" in message
    leftovers = [p.name for p in (tmp_path / "work" / "packages").iterdir() if p.name not in ("downloads", "failed")]
    assert leftovers == []
    assert list((tmp_path / "work" / "packages" / "downloads").iterdir()) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            ApplicationSpec(command="x", installer="conda", url="file:///x"),
            "installer 'conda'; this executor manager has: python",
        ),
        (
            ApplicationSpec(command="x", installer="python", url="ftp://h/p.tgz"),
            "unsupported scheme: accepted are file, http, https",
        ),
        (ApplicationSpec(command="x", installer="python", url="file:///no/such/pkg.tgz"), "cannot read package"),
        (
            ApplicationSpec(
                command="x", installer="python", url="file:///x", environments={"FLAME_PYTHON_VERSION": "2.7"}
            ),
            "asks for Python 2.7",
        ),
    ],
)
def test_bad_installer_settings_are_refused(tmp_path: Path, spec: ApplicationSpec, expected: str) -> None:
    with pytest.raises(ShimError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        asyncio.run(PackageEnvironments(tmp_path).prepare("app", spec, "e1"))


@pytest.mark.slow  # a venv with pip, then pip's own build of the package: about a minute here
def test_pip_fallback_installs_the_package_too(tmp_path: Path) -> None:
    environments = PackageEnvironments(tmp_path / "work", tool="pip")
    url = make_package(tmp_path / "demo.tar.gz")
    spec = asyncio.run(environments.prepare("demo", spec_for(url), "e1"))
    log = (Path(spec.environments["FLAME_PACKAGE_DIR"]).parent / "install.log").read_text()
    assert "-m pip install" in log and "uv pip" not in log
    site = Path(spec.environments["PYTHONPATH"].split(":")[0])
    assert any(p.name.startswith(DEPENDENCY) for p in site.iterdir())


def test_cluster_runs_a_service_from_its_installed_package(tmp_path: Path) -> None:
    url = make_package(tmp_path / "demo.tar.gz")
    broken = make_package(tmp_path / "broken.tar.gz", name="broken", dependencies='"not-a-list"')
    with LocalCluster(executors=2, data_dir=tmp_path / "data") as cluster, flame.connect(cluster.endpoint) as conn:
        conn.register_application("where", spec_for(url))
        with conn.create_session("where", min_instances=2) as session:
            outputs = {session.run(b"").result(120).decode() for _ in range(8)}
        tabulate_file, package_dir = outputs.pop().split("|")
        assert not outputs  # every executor saw the same environment
        env_root = Path(package_dir).parent
        assert Path(tabulate_file).is_relative_to(env_root)
        packages = [p for p in env_root.parent.iterdir() if not p.name.startswith((".", "downloads", "failed"))]
        assert packages == [env_root]
        assert (env_root / "install.log").read_text().count("$ ") == 1  # one install for both executors

        conn.register_application("broken", spec_for(broken))
        session = conn.create_session("broken")
        future = session.run(b"")

        def bind_failed() -> list[str]:
            session.refresh()
            return [e.message or "" for e in session.events if e.code == EVENT_SESSION_BIND_FAILED]

        messages = wait_for(bind_failed, timeout=120)
        assert isinstance(messages, list)
        assert "installing the package of application broken failed" in messages[0]
        assert "last lines of" in messages[0]
        future.cancel()
        session.close()


def test_runner_style_package_without_dependencies_installs(tmp_path: Path) -> None:
    # As flamepy's Runner generates it for a directory with no pyproject.toml: no modules, no deps.
    url = make_package(tmp_path / "plain.tar.gz", dependencies="[]")
    spec = asyncio.run(PackageEnvironments(tmp_path / "work").prepare("plain", spec_for(url), "e1"))
    assert (Path(spec.environments["FLAME_PACKAGE_DIR"]) / "where_service.py").exists()
    assert json.loads((Path(spec.environments["FLAME_PACKAGE_DIR"]).parent / "ready.json").read_text())[
        "applications"
    ] == ["plain"]
    assert sys.executable


def test_the_same_files_packed_twice_are_one_package(tmp_path: Path) -> None:
    # gzip stamps the packing time, so flamepy's Runner gives different bytes for the same files each run.
    from flame.executor_manager.installers._package import fetch

    first = make_package(tmp_path / "a.tar.gz", metadata=False)
    raw = bytearray((tmp_path / "a.tar.gz").read_bytes())
    raw[4:8] = (int.from_bytes(raw[4:8], "little") + 3600).to_bytes(4, "little")  # gzip header mtime
    (tmp_path / "b.tar.gz").write_bytes(bytes(raw))
    _, digest_a = fetch(first, tmp_path / "downloads")
    _, digest_b = fetch(f"file://{tmp_path / 'b.tar.gz'}", tmp_path / "downloads")
    assert (tmp_path / "a.tar.gz").read_bytes() != (tmp_path / "b.tar.gz").read_bytes()
    assert digest_a == digest_b


def test_a_work_dir_that_cannot_be_written_fails_the_bind_not_the_agent(tmp_path: Path) -> None:
    from flame.executor_manager import AgentSettings
    from flame.executor_manager.installers import prepare_application
    from flame.types import ResourceRequirement

    (tmp_path / "work").write_text("a file where a directory should be")
    settings = AgentSettings(
        session_manager="127.0.0.1:1",
        node_name="n",
        capacity=ResourceRequirement(1, 1, 0),
        work_dir=tmp_path / "work",
        socket_dir=tmp_path,
    )
    url = make_package(tmp_path / "demo.tar.gz", metadata=False)
    with pytest.raises(ShimError, match="cannot prepare the package of application demo: NotADirectoryError"):
        asyncio.run(prepare_application(settings, "demo", spec_for(url), "e1"))


def test_a_package_with_a_path_outside_it_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as archive:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(ShimError, match="a path outside the package: refused"):
        asyncio.run(PackageEnvironments(tmp_path / "work").prepare("evil", spec_for(f"file://{evil}"), "e1"))
    assert not (tmp_path / "work" / "packages" / "escaped.txt").exists()
