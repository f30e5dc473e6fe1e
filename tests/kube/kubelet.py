"""A scheduler and kubelet stand-in: one node that places pods by their requests and runs each
pod's container command as a local process with the pod's environment.

Images are not pulled: a container's command runs from the image's PATH (``images`` maps an
image to a bin directory; any other image uses this Python's). Faults are set per image
(``ImagePullBackOff``, ``CrashLoopBackOff``) or per pod (``oom_kill``), and pods whose requests do
not fit the node stay Pending as Unschedulable until room frees up, as with kube-scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.kube.apiserver import ApiServer, Obj, now

MARK = "FLAME_EMULATED_POD"  # every process of a pod carries it: the kubelet's stand-in for a cgroup
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


def quantity(text: str, milli: bool = False) -> int:
    """A Kubernetes quantity: cpu in millicores when ``milli``, else a count (bytes)."""
    text = str(text)
    if text.endswith("m"):
        return int(text[:-1]) if milli else int(text[:-1]) // 1000
    for unit, factor in _UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(float(text) * (1000 if milli else 1))


def requests(pod: Obj) -> tuple[int, int]:
    cpu = memory = 0
    for c in pod["spec"]["containers"]:
        r = (c.get("resources") or {}).get("requests") or {}
        cpu += quantity(r.get("cpu", "0"), milli=True)
        memory += quantity(r.get("memory", "0"))
    return cpu, memory


def kill_marked(uid: str) -> None:
    """SIGKILL every process whose environment says it belongs to pod ``uid``."""
    needle = f"{MARK}={uid}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


class Kubelet:
    def __init__(self, api: ApiServer, cpu: int = 64, memory: int = 256 * 2**30, node: str = "emulated-node") -> None:
        self.api = api
        self.node = node
        self.cpu_milli = cpu * 1000
        self.memory = memory
        self.images: dict[str, str] = {}  # image -> bin directory first on PATH
        self.faults: dict[str, str] = {}  # image -> ImagePullBackOff | CrashLoopBackOff
        self.start_delay = 0.0  # seconds between a pod being scheduled and its container starting
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.placed: dict[str, tuple[int, int]] = {}  # pod name -> requests held on the node
        self.waiting: list[str] = []  # unschedulable pods, oldest first
        self.oom: set[str] = set()
        self.started: dict[str, float] = {}  # pod name -> loop time its container started
        self._tasks: set[asyncio.Task[Any]] = set()
        self._root = Path(tempfile.mkdtemp(prefix="flame-kubelet-"))
        api.on_create.append(self._created)
        api.on_delete.append(self._deleting)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- scheduling ---------------------------------------------------------------------------

    def _created(self, pod: Obj) -> None:
        self._spawn(self._schedule(pod["metadata"]["name"], pod["metadata"]["namespace"]))

    def _free(self) -> tuple[int, int]:
        cpu = self.cpu_milli - sum(c for c, _ in self.placed.values())
        return cpu, self.memory - sum(m for _, m in self.placed.values())

    async def _schedule(self, name: str, ns: str) -> None:
        pod = self.api.get("pods", ns, name)
        if pod is None or "deletionTimestamp" in pod["metadata"]:
            return
        cpu, memory = requests(pod)
        free_cpu, free_memory = self._free()
        if cpu > free_cpu or memory > free_memory:
            short = "Insufficient cpu" if cpu > free_cpu else "Insufficient memory"
            message = f"0/1 nodes are available: 1 {short}. preemption: 0/1 nodes are available."
            if name not in self.waiting:
                self.waiting.append(name)
                pod["status"] = {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": message,
                            "lastTransitionTime": now(),
                        }
                    ],
                }
                await self.api.put("pods", pod, "MODIFIED")
                await self.api.record_event(pod, "Warning", "FailedScheduling", message)
            return
        if name in self.waiting:
            self.waiting.remove(name)
        self.placed[name] = (cpu, memory)
        pod["spec"]["nodeName"] = self.node
        pod["status"] = {
            "phase": "Pending",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": now(),
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}],
        }
        await self.api.put("pods", pod, "MODIFIED")
        await self.api.record_event(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {self.node}")
        self._spawn(self._run(name, ns))

    async def _reschedule(self) -> None:
        for name in list(self.waiting):
            pod = next((p for p in self.api.items("pods") if p["metadata"]["name"] == name), None)
            if pod is None:
                self.waiting.remove(name)
                continue
            await self._schedule(name, pod["metadata"]["namespace"])

    # ---- running ------------------------------------------------------------------------------

    def _env(self, pod: Obj, container: Obj, home: Path) -> dict[str, str]:
        image = container["image"]
        env = {
            "PATH": f"{self.images.get(image, os.path.dirname(sys.executable))}:{os.environ.get('PATH', '')}",
            "HOME": str(home),
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            MARK: pod["metadata"]["uid"],
        }
        fields = {
            "metadata.name": pod["metadata"]["name"],
            "metadata.namespace": pod["metadata"]["namespace"],
            "metadata.uid": pod["metadata"]["uid"],
            "status.podIP": "127.0.0.1",
            "spec.nodeName": self.node,
        }
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = _VAR.sub(lambda m: env.get(m[1], m[0]), item["value"])
            elif "fieldRef" in (item.get("valueFrom") or {}):
                env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        return env

    async def _status(self, pod: Obj, phase: str, state: Obj, ready: bool = False, **extra: Any) -> None:
        container = pod["spec"]["containers"][0]
        pod["status"]["phase"] = phase
        pod["status"]["containerStatuses"] = [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "state": state,
                **extra,
            }
        ]
        await self.api.put("pods", pod, "MODIFIED")

    async def _run(self, name: str, ns: str) -> None:
        if self.start_delay:
            await asyncio.sleep(self.start_delay)  # an emulated image pull and container start
        pod = self.api.get("pods", ns, name)
        if pod is None or "deletionTimestamp" in pod["metadata"]:
            return
        container = pod["spec"]["containers"][0]
        fault = self.faults.get(container["image"])
        if fault == "ImagePullBackOff":
            message = f'Back-off pulling image "{container["image"]}"'
            await self._status(pod, "Pending", {"waiting": {"reason": "ImagePullBackOff", "message": message}})
            await self.api.record_event(pod, "Warning", "Failed", f"Failed to pull image: {message}")
            return
        home = self._root / name
        home.mkdir(parents=True, exist_ok=True)
        env = self._env(pod, container, home)
        argv = [
            _VAR.sub(lambda m: env.get(m[1], m[0]), a) for a in container.get("command", []) + container.get("args", [])
        ]
        if fault == "CrashLoopBackOff":
            argv = [sys.executable, "-c", "import sys; print('crashing', file=sys.stderr); sys.exit(3)"]
        log = open(home / "container.log", "ab")  # noqa: SIM115, ASYNC230 (closed when the process ends)
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=home, stdout=log, stderr=log, start_new_session=True
        )
        self.processes[name] = process
        self.started[name] = asyncio.get_running_loop().time()
        await self._status(pod, "Running", {"running": {"startedAt": now()}}, ready=True)
        await self.api.record_event(pod, "Normal", "Started", f"Started container {container['name']}")
        code = await process.wait()
        log.close()
        self.processes.pop(name, None)
        kill_marked(pod["metadata"]["uid"])  # the container is gone, and with it everything it started
        pod = self.api.get("pods", ns, name)
        if pod is None:
            return
        if "deletionTimestamp" in pod["metadata"]:
            await self._gone(pod)
            return
        if name in self.oom:
            terminated = {"exitCode": 137, "reason": "OOMKilled", "finishedAt": now()}
            await self._status(pod, "Failed", {"terminated": terminated})
        elif fault == "CrashLoopBackOff":
            last = {"terminated": {"exitCode": code, "reason": "Error", "finishedAt": now()}}
            message = f"back-off 10s restarting failed container={container['name']} pod={name}"
            await self._status(
                pod, "Running", {"waiting": {"reason": "CrashLoopBackOff", "message": message}}, lastState=last
            )
            await self.api.record_event(pod, "Warning", "BackOff", message)
            return  # restarting is left to the provider, which deletes pods that crash-loop
        else:
            phase = "Succeeded" if code == 0 else "Failed"
            reason = "Completed" if code == 0 else "Error"
            await self._status(pod, phase, {"terminated": {"exitCode": code, "reason": reason, "finishedAt": now()}})
        self._release(name)

    def oom_kill(self, name: str) -> None:
        """The container goes over its memory limit: SIGKILL, reported as OOMKilled."""
        self.oom.add(name)
        process = self.processes.get(name)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def _release(self, name: str) -> None:
        if self.placed.pop(name, None) is not None and self.waiting:
            self._spawn(self._reschedule())

    # ---- deleting -----------------------------------------------------------------------------

    def _deleting(self, pod: Obj, grace: int) -> bool:
        name = pod["metadata"]["name"]
        process = self.processes.get(name)
        if process is None:
            self._spawn(self._gone(pod))
            return True
        self._spawn(self._stop(process, grace))
        return True

    async def _stop(self, process: asyncio.subprocess.Process, grace: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    async def _gone(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        if self.api.get("pods", pod["metadata"]["namespace"], name) is None:
            return
        if name in self.waiting:
            self.waiting.remove(name)
        self._release(name)
        await self.api.put("pods", pod, "DELETED")

    async def stop(self) -> None:
        for process in list(self.processes.values()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for process in list(self.processes.values()):
            await process.wait()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
