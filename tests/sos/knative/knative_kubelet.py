"""The part of a cluster that runs a Job's pod, for the stand-in API server.

No cluster can run here, so ``JobKubelet`` does for remote-build Jobs what the Job
controller and the kubelet would, with real processes: when a Job is applied it makes its
pod (labels of the template, ``job-name``), resolves the container's environment
(``value``, and ``secretKeyRef`` from the Secrets applied to the stand-in: a missing one
leaves the pod waiting with ``CreateContainerConfigError``), and runs the container's
command as a local process: the image is the given Python (a clean interpreter, as the
runtime image has), the ``emptyDir`` at ``/sos/work`` a fresh directory (the paths in the
environment are moved there). Its output is the pod's log (``follow`` streams it); its exit
ends the pod (Succeeded or Failed, with the exit code) and the Job (Complete, or Failed
with ``BackoffLimitExceeded``); ``activeDeadlineSeconds`` kills it (``DeadlineExceeded``);
deleting the Job kills it. An image listed in the stand-in's ``failing_images`` is never
pulled: the pod waits with ``ImagePullBackOff``; with ``unschedulable`` set, pods stay
``Pending`` with the scheduler's ``PodScheduled`` condition.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from knative_standin import KnativeStandIn

Obj = dict[str, Any]


def _status(name: str, image: str, state: Obj) -> Obj:
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": "running" in state,
        "restartCount": 0,
        "state": state,
    }


class JobKubelet:
    def __init__(self, standin: KnativeStandIn, python: str, root: Path) -> None:
        self.standin = standin
        self.python = python
        self.root = root
        self.processes: dict[tuple[str, str], asyncio.subprocess.Process] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        #: the scheduler's message when no node can take a pod (None: every pod fits)
        self.unschedulable: str | None = None
        #: why a Job's container was killed (``kill``)
        self.killed: dict[tuple[str, str], str] = {}
        standin.kubelet = self

    def start(self, job: Obj) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def kill(self, namespace: str, job: str, reason: str) -> None:
        """Kill the Job's container as the kubelet does (``OOMKilled``: it passed its memory
        limit): exit code 137, ``reason`` in its terminated state."""
        self.killed[(namespace, job)] = reason
        process = self.processes[(namespace, job)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def stop(self, namespace: str, job: str) -> None:
        process = self.processes.get((namespace, job))
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for key in [k for k, p in self.standin.pods.items() if _job_of(p) == (namespace, job)]:
            del self.standin.pods[key]

    async def _run(self, job: Obj) -> None:
        meta = job["metadata"]
        namespace, name = meta.get("namespace") or "default", meta["name"]
        template = job["spec"]["template"]
        (container,) = template["spec"]["containers"]
        pod_name = f"{name}-x{len(self.standin.pods)}"
        labels = {**template["metadata"].get("labels", {}), "job-name": name}
        pod: Obj = {
            "metadata": {"name": pod_name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": container["name"], "image": container["image"]}]},
            "status": {"phase": "Pending"},
        }
        self.standin.pods[(namespace, pod_name)] = pod

        def waiting(reason: str, message: str) -> None:
            state = {"waiting": {"reason": reason, "message": message}}
            pod["status"]["containerStatuses"] = [
                _status(container["name"], container["image"], state)
            ]

        if self.unschedulable is not None:  # no node has room: it stays Pending
            pod["status"]["conditions"] = [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": self.unschedulable,
                }
            ]
            return
        if container["image"] in self.standin.failing_images:
            waiting("ImagePullBackOff", f'Back-off pulling image "{container["image"]}"')
            return
        work = self.root / pod_name
        work.mkdir(parents=True)
        mount = container["volumeMounts"][0]["mountPath"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work)}
        for item in container["env"]:
            if "value" in item:
                env[item["name"]] = item["value"].replace(mount, str(work))
                continue
            ref = item["valueFrom"]["secretKeyRef"]
            secret = self.standin.secrets.get((namespace, ref["name"]))
            if secret is None:
                waiting("CreateContainerConfigError", f'secret "{ref["name"]}" not found')
                return
            env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        command = [self.python if container["command"][0] == "python3" else container["command"][0]]
        process = await asyncio.create_subprocess_exec(
            *command,
            *container["command"][1:],
            env=env,
            cwd=work,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[(namespace, name)] = process
        ended = asyncio.Event()
        self.standin.pod_ended[pod_name] = ended
        self.standin.pod_logs[pod_name] = []
        pod["status"]["phase"] = "Running"
        pod["status"]["containerStatuses"] = [
            _status(container["name"], container["image"], {"running": {}})
        ]
        deadline = job["spec"].get("activeDeadlineSeconds")
        late = False

        async def output() -> None:  # (a line may be longer than a StreamReader's limit)
            assert process.stdout is not None
            pending = b""
            while chunk := await process.stdout.read(1 << 16):
                *lines, pending = (pending + chunk).split(b"\n")
                self.standin.pod_logs[pod_name].extend(
                    raw.decode(errors="replace") for raw in lines
                )
            if pending:
                self.standin.pod_logs[pod_name].append(pending.decode(errors="replace"))

        reader = asyncio.create_task(output())
        try:
            await asyncio.wait_for(process.wait(), deadline)
        except TimeoutError:
            late = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await reader  # to the end of its output
            ended.set()
        killed = self.killed.get((namespace, name))
        code = process.returncode if not late and not killed else 137
        pod["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
        terminated: Obj = {"exitCode": code, **({"reason": killed} if killed else {})}
        pod["status"]["containerStatuses"] = [
            _status(container["name"], container["image"], {"terminated": terminated})
        ]
        if (namespace, name) not in self.standin.jobs:
            return  # deleted
        if code == 0:
            self.standin.finish_job(name, "Complete", namespace=namespace)
        else:
            self.standin.finish_job(
                name, "Failed", "DeadlineExceeded" if late else "BackoffLimitExceeded", namespace
            )

    async def close(self) -> None:
        for namespace, job in list(self.processes):
            self.stop(namespace, job)
        for task in list(self.tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _job_of(pod: Obj) -> tuple[str, str] | None:
    meta = pod.get("metadata") or {}
    job = (meta.get("labels") or {}).get("job-name")
    return (meta.get("namespace") or "default", job) if job else None
