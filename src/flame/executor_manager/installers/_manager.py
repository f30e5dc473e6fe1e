"""Package environments of one executor manager, cached by package digest.

``prepare`` is called before an executor's service is launched. For an application with
``installer: python`` and a ``url`` it fetches the package, and installs it (with its declared
dependencies) into ``<work_dir>/packages/<digest>/`` unless that environment exists already; the
spec it returns puts the environment first on the service's PYTHONPATH. Executors waiting on the
same package wait for one install (a lock per digest). After an install, environments no running
service uses are removed: at once when a newer package of the same applications replaced them,
otherwise beyond the ``keep_unused`` most recently used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from flame.executor_manager.installers import _package, _python
from flame.executor_manager.shims import ShimError
from flame.types import ApplicationSpec

logger = logging.getLogger(__name__)

INSTALLERS = ("python",)
PYTHON_VERSION_ENV = "FLAME_PYTHON_VERSION"
PACKAGE_DIR_ENV = "FLAME_PACKAGE_DIR"
READY = "ready.json"
KEEP_UNUSED = 4
# An environment prepared this recently counts as used (its service may be starting).
STARTING_GRACE = 120.0


@dataclass
class _Environment:
    digest: str
    path: Path
    applications: set[str] = field(default_factory=set)
    last_used: float = 0.0


class PackageEnvironments:
    """The environments under ``<work_dir>/packages`` and who uses them."""

    def __init__(self, work_dir: Path, *, tool: str | None = None, keep_unused: int = KEEP_UNUSED) -> None:
        self.root = work_dir / "packages"
        self._pids = work_dir / "pids"
        self._tool = tool
        self._keep_unused = keep_unused
        self._locks: dict[str, asyncio.Lock] = {}
        self._environments: dict[str, _Environment] = {}
        self._current: dict[str, str] = {}  # application -> digest of its latest package here
        self._leases: dict[str, str] = {}  # executor id -> digest its service runs on
        self._scanned = False
        self.installs = 0  # installs done by this process (for tests and logs)

    async def prepare(self, application: str, spec: ApplicationSpec, executor_id: str) -> ApplicationSpec:
        """``spec`` with the environment of its package added; ShimError if that cannot be had."""
        installer = (spec.installer or "").strip().lower()
        if not installer:
            return spec
        if installer not in INSTALLERS:
            raise ShimError(
                f"application {application} asks for installer {spec.installer!r}; "
                f"this executor manager has: {', '.join(INSTALLERS)}"
            )
        _check_python(application, spec)
        if not spec.url:
            return spec  # nothing to install (a template such as flmrun itself)
        environment = await self._environment(application, spec.url)
        self._leases[executor_id] = environment.digest  # replaces what this executor ran before
        self._clean(keep=environment.digest)
        return replace(spec, environments={**spec.environments, **self._variables(environment, spec)})

    async def _environment(self, application: str, url: str) -> _Environment:
        package, digest = await asyncio.to_thread(_package.fetch, url, self.root / "downloads")
        try:
            lock = self._locks.setdefault(digest, asyncio.Lock())
            async with lock:
                environment = self._environments.get(digest) or self._load(digest)
                if environment is None:
                    environment = await self._install(application, url, package, digest)
        finally:
            package.unlink(missing_ok=True)
        environment.applications.add(application)
        environment.last_used = time.time()
        self._current[application] = digest
        self._touch(environment)
        return environment

    def _load(self, digest: str) -> _Environment | None:
        """An environment installed earlier (by this process or a previous one), if complete."""
        path = self.root / digest[:32]
        try:
            ready = json.loads((path / READY).read_text())
        except (OSError, ValueError):
            return None
        environment = _Environment(digest, path, set(ready.get("applications", [])), float(ready.get("last_used", 0)))
        self._environments[digest] = environment
        return environment

    async def _install(self, application: str, url: str, package: Path, digest: str) -> _Environment:
        path = self.root / digest[:32]
        building = self.root / f".building-{digest[:32]}-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)  # an unfinished one
        building.mkdir(parents=True)
        log = building / "install.log"
        started = time.monotonic()
        logger.info("installing the package of application %s (%s, sha256 %s)", application, url, digest[:12])
        try:
            source = await asyncio.to_thread(_package.unpack, package, url, building / "src")
            if _package.has_metadata(source):
                result = await _python.install(source, building / "site", log, tool=self._tool)
                how = result.tool
            else:
                (building / "site").mkdir()
                log.write_text(f"{url}: no pyproject.toml, setup.py or setup.cfg: nothing to install\n")
                how = "no metadata, source only"
            (building / "source").write_text(str(source.relative_to(building)) if source.is_dir() else "src")
            building.rename(path)
        except ShimError as exc:
            kept = self.root / "failed" / f"{digest[:32]}.log"
            with contextlib.suppress(OSError):
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, kept)
            shutil.rmtree(building, ignore_errors=True)
            message = exc.message.replace(str(log), str(kept))
            raise ShimError(f"installing the package of application {application} failed: {message}") from exc
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        self.installs += 1
        logger.info("installed application %s's package with %s in %.1fs", application, how, time.monotonic() - started)
        environment = _Environment(digest, path)
        self._environments[digest] = environment
        return environment

    def _variables(self, environment: _Environment, spec: ApplicationSpec) -> dict[str, str]:
        site = environment.path / "site"
        source_rel = (environment.path / "source").read_text() if (environment.path / "source").exists() else "src"
        source = environment.path / source_rel
        paths = [str(site), str(source)]
        inherited = spec.environments.get("PYTHONPATH") or os.environ.get("PYTHONPATH")
        if inherited:
            paths.append(inherited)
        variables = {"PYTHONPATH": os.pathsep.join(paths), PACKAGE_DIR_ENV: str(source)}
        if (site / "bin").is_dir():
            base = spec.environments.get("PATH") or os.environ.get("PATH", "")
            variables["PATH"] = os.pathsep.join([str(site / "bin"), base]) if base else str(site / "bin")
        return variables

    def _touch(self, environment: _Environment) -> None:
        ready = {
            "digest": environment.digest,
            "applications": sorted(environment.applications),
            "last_used": time.time(),
        }
        with contextlib.suppress(OSError):
            (environment.path / READY).write_text(json.dumps(ready))

    # ---- cleanup ----

    def _in_use(self) -> set[str]:
        """Digests a running service (or one starting) uses."""
        used = {d for executor, d in self._leases.items() if (self._pids / f"{executor}.pid").exists()}
        for executor in [e for e in self._leases if not (self._pids / f"{e}.pid").exists()]:
            environment = self._environments.get(self._leases[executor])
            if environment is not None and time.time() - environment.last_used < STARTING_GRACE:
                used.add(environment.digest)
            else:
                del self._leases[executor]
        return used

    def _scan(self) -> None:
        """Know the environments a previous executor manager left (once)."""
        if self._scanned:
            return
        self._scanned = True
        with contextlib.suppress(OSError):
            for entry in self.root.iterdir():
                if entry.name.startswith(".removing-") or entry.name.startswith(".building-"):
                    shutil.rmtree(entry, ignore_errors=True)
                elif (entry / READY).exists():
                    with contextlib.suppress(OSError, ValueError):
                        digest = json.loads((entry / READY).read_text())["digest"]
                        if digest not in self._environments:
                            self._load(digest)

    def _clean(self, keep: str) -> None:
        self._scan()
        in_use = self._in_use() | {keep}
        unused = [e for d, e in self._environments.items() if d not in in_use]
        superseded = [
            e for e in unused if e.applications and all(self._current.get(a) != e.digest for a in e.applications)
        ]
        rest = sorted((e for e in unused if e not in superseded), key=lambda e: e.last_used, reverse=True)
        for environment in [*superseded, *rest[self._keep_unused :]]:
            self._remove(environment)

    def _remove(self, environment: _Environment) -> None:
        self._environments.pop(environment.digest, None)
        self._locks.pop(environment.digest, None)
        trash = self.root / f".removing-{environment.path.name}"
        try:
            environment.path.rename(trash)
        except OSError as exc:
            logger.warning("cannot remove package environment %s: %s", environment.path, exc)
            return
        shutil.rmtree(trash, ignore_errors=True)
        logger.info(
            "removed unused package environment %s (%s)",
            environment.path.name[:12],
            ", ".join(sorted(environment.applications)),
        )


def _check_python(application: str, spec: ApplicationSpec) -> None:
    wanted = spec.environments.get(PYTHON_VERSION_ENV, "").strip().removeprefix("python")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted and wanted != here and not here.startswith(f"{wanted}."):
        raise ShimError(
            f"application {application} asks for Python {wanted} ({PYTHON_VERSION_ENV}); "
            f"this executor manager runs Python {here}: register it without python_version, or run an "
            f"executor manager under Python {wanted}"
        )
