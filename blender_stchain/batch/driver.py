"""The batch driver: clips onto long-lived Ray actors, faults, cancel and the summary.

A clip that fails is recorded with its one-line reason and the batch goes on. A worker that dies
(killed, out of host memory, node lost) has its clip retried on another worker, at most ``retries``
more times; the dead worker is replaced. Ctrl-C asks every running clip to stop between steps
(the pipeline drops its partial files), waits ``CANCEL_GRACE_S``, then ends the workers and sweeps
what a killed one left. Nothing but finished results, their ``NAME.job.json``, ``summary.json``
and ``events.jsonl`` stays in the batch folder.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..cli_export import export_in_child
from ..contracts.errors import StchainError
from ..contracts.result import remove_stale_spools
from .identity import job_hash
from .blend import write_blend
from .jobs import ClipJob
from .summary import (ClipRecord, EventLog, Progress, finished_before, sidecar, summary, write_bytes_atomic,
                      write_json_atomic)

CANCEL_GRACE_S = 20.0
ACTOR_START_S = 600
POLL_S = 0.5
MIB = 1 << 20
RAY_MISSING = "batch runs need Ray: pip install 'blender_stchain[batch]' (or pip install ray)"


@dataclass
class BatchOptions:
    out: Path
    ray: str = "auto"  # "auto": a local Ray instance on this machine; otherwise a cluster address
    gpus_per_job: float | None = None  # None: 1 when the cluster has GPUs, else 0
    cpus_per_job: int = 1
    workers: int | None = None  # at most this many actors (default: as many as the resources hold)
    blend: bool = False
    export: tuple = ()  # formats written beside each result ("abc", "usdc", "glb", ...)
    resume: bool = False
    retries: int = 2  # extra attempts of a clip whose worker died
    object_store_mb: int = 128  # local instance only: results are small, the store need not be
    via_store: bool = False  # results back through the object store even when the workers see ``out``
    jobs: str = ""


def run_batch(clips: list[ClipJob], opt: BatchOptions, stream=None) -> dict:
    """Run every clip; returns (and writes) the summary. KeyboardInterrupt cancels cleanly."""
    opt.out.mkdir(parents=True, exist_ok=True)
    records = {c.name: ClipRecord(c.name, result=c.result, source=c.source) for c in clips}
    log = EventLog(opt.out / "events.jsonl")
    t0 = time.monotonic()
    pending, hashes = _plan(clips, opt, records, log)
    progress = Progress(len(clips), stream)
    workers, ran, stopped = 0, 0, ("cancelled", "cancelled by the user")
    try:
        progress.show(list(records.values()))
        if pending:
            with _Cluster(opt) as cluster:
                workers = cluster.size(len(pending))
                ran = _Scheduler(cluster, opt, records, hashes, log, progress).run(pending, workers)
    except Exception as e:
        stopped = ("failed", f"not run: {e}")
        raise
    finally:
        for r in records.values():
            if r.status in ("pending", "running"):
                r.status, r.message = stopped
        _sweep(opt.out)
        progress.show(list(records.values()))
        progress.close()
        out = summary(list(records.values()), opt.jobs, time.monotonic() - t0, workers, ran)
        write_json_atomic(opt.out / "summary.json", out)
        log.close()
    return out


def _plan(clips, opt, records, log) -> tuple[deque, dict]:
    """Bad entries are recorded as failed; with ``--resume`` finished clips of the same job are skipped."""
    pending, hashes = deque(), {}
    for c in clips:
        rec = records[c.name]
        if c.error:
            rec.status, rec.message = "failed", c.error
            log.write({"clip": c.name, "event": "failed", "message": c.error})
            continue
        try:
            hashes[c.name] = job_hash(c.spec)
        except OSError as e:
            why = f"cannot read {e.filename or 'the footage'} ({e.strerror or e})"
            rec.status, rec.message = "failed", f"{c.source}: {why}"
            log.write({"clip": c.name, "event": "failed", "message": rec.message})
            continue
        if opt.resume and finished_before(c.result, hashes[c.name], opt.blend):
            rec.status = "skipped"
            rec.blend = str(Path(c.result).with_suffix(".blend")) if opt.blend else ""
            log.write({"clip": c.name, "event": "skipped", "message": "finished before with the same job"})
            continue
        pending.append({"name": c.name, "spec": c.spec, "blend": opt.blend, "export": list(opt.export)})
    return pending, hashes


def _sweep(out: Path) -> None:
    """What killed workers left: node folders, spools and temporary files of dead processes."""
    for p in out.glob(".stchain-node-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.glob(".stchain-batch-*"):
        p.unlink(missing_ok=True)
    remove_stale_spools(out)


class _Cluster:
    """Ray started locally (``auto``) or joined at an address; actors are placed by resources."""

    def __init__(self, opt: BatchOptions):
        self.opt = opt
        try:
            import ray
        except ImportError:
            raise StchainError(RAY_MISSING) from None
        self.ray = ray

    def __enter__(self):
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self):
        opt, ray = self.opt, self.ray
        self.marker = None
        kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if opt.ray == "auto":
            cores = os.cpu_count() or 1  # never more CPUs than the machine has, but room for one worker
            cpus = max(opt.cpus_per_job, min((opt.workers or cores) * opt.cpus_per_job, cores))
            # "local": always a new instance of our own, even where `ray start` left one running
            ray.init(address="local", num_cpus=cpus, object_store_memory=opt.object_store_mb * MIB, **kw)
        else:
            ray.init(address=opt.ray, **kw)
        # the marker a worker reads to know that the batch folder is shared with this driver
        self.token = uuid.uuid4().hex
        self.marker = opt.out / f".stchain-batch-{self.token}"
        self.marker.write_text(self.token, encoding="utf-8")
        res = ray.cluster_resources()
        self.gpus = opt.gpus_per_job if opt.gpus_per_job is not None else (1 if res.get("GPU", 0) else 0)
        self.capacity = int(res.get("CPU", 0) // opt.cpus_per_job)
        if self.gpus:
            self.capacity = min(self.capacity, int(res.get("GPU", 0) // self.gpus))
        if self.capacity < 1:
            raise StchainError(f"the Ray cluster has no room for one worker ({res.get('CPU', 0):g} CPUs, "
                               f"{res.get('GPU', 0):g} GPUs; a worker needs {opt.cpus_per_job} CPUs and "
                               f"{self.gpus:g} GPUs): lower --cpus-per-job / --gpus-per-job or add nodes")
        from .worker import ClipWorker

        self.actor_class = ray.remote(ClipWorker).options(num_cpus=opt.cpus_per_job, num_gpus=self.gpus,
                                                          max_concurrency=2)
        return self

    def size(self, clips: int) -> int:
        return max(1, min(self.capacity, self.opt.workers or self.capacity, clips))

    def start_worker(self):
        marker = None if self.opt.via_store else str(self.marker)
        return self.actor_class.remote(threads=self.opt.cpus_per_job, marker=marker, token=self.token)

    def __exit__(self, *exc):
        if getattr(self, "marker", None) is not None:
            self.marker.unlink(missing_ok=True)
        self.ray.shutdown()
        return False


class _Scheduler:
    """Hands clips to idle actors, follows their events, retries clips of dead workers."""

    def __init__(self, cluster: _Cluster, opt, records, hashes, log, progress):
        self.cluster, self.ray, self.opt = cluster, cluster.ray, opt
        self.records, self.hashes, self.log, self.progress = records, hashes, log, progress
        self.busy: dict = {}  # run ref -> (actor, clip)
        self.info: dict = {}  # actor -> {"pid", "node", "shared"}
        self.ran = 0

    def run(self, pending: deque, workers: int) -> int:
        idle = self._new_workers(workers)
        replacements = workers * (self.opt.retries + 1)
        try:
            while pending or self.busy:
                while pending and idle:
                    self._start(idle.pop(), pending.popleft())
                if not self.busy and pending:  # every worker died and none may replace it
                    for clip in pending:
                        self._record(clip, "failed", "no worker left: workers kept dying (see events.jsonl)")
                    break
                ready, _ = self.ray.wait(list(self.busy), num_returns=1, timeout=POLL_S)
                self._poll()
                for ref in ready:
                    actor, clip = self.busy.pop(ref)
                    if self._finish(ref, clip, pending):
                        idle.append(actor)
                    elif replacements > 0:
                        replacements -= 1
                        idle += self._new_workers(1)
                self.progress.show(list(self.records.values()))
        except KeyboardInterrupt:
            self._cancel()
        return self.ran

    def _new_workers(self, n: int) -> list:
        actors = [self.cluster.start_worker() for _ in range(n)]
        try:
            infos = self.ray.get([a.info.remote() for a in actors], timeout=ACTOR_START_S)
        except self.ray.exceptions.GetTimeoutError:
            raise StchainError(f"a worker did not start within {ACTOR_START_S} s: the cluster's CPUs/GPUs are "
                               "busy elsewhere; free them or lower --workers") from None
        except self.ray.exceptions.RayError as e:
            first = (str(e).strip().splitlines() or [""])[0][:200]
            raise StchainError(f"a worker could not start ({type(e).__name__}: {first}); every node needs the same "
                               "environment with blender_stchain[batch] installed") from None
        self.info.update(zip(actors, infos))
        return actors

    def _start(self, actor, clip: dict) -> None:
        rec = self.records[clip["name"]]
        rec.status, rec.attempts = "running", rec.attempts + 1
        self.busy[actor.run.remote(clip)] = (actor, clip)
        self.log.write({"clip": clip["name"], "event": "start", "attempt": rec.attempts, **self.info[actor]})

    def _poll(self) -> None:
        refs = {actor.poll.remote(): actor for actor, _ in self.busy.values()}
        ready, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=5.0)
        for ref in ready:
            try:
                events = self.ray.get(ref)
            except self.ray.exceptions.RayError:  # a dead worker: its run ref says so
                continue
            for e in events:
                self.log.write(e)

    def _finish(self, ref, clip: dict, pending: deque, cancelling: bool = False) -> bool:
        """Record a returned clip; False when its worker died (the clip is queued again or failed)."""
        name, rec = clip["name"], self.records[clip["name"]]
        try:
            outcome = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as e:
            why = f"its worker died ({type(e).__name__}) on attempt {rec.attempts}"
            if rec.attempts <= self.opt.retries:
                rec.status = "pending"
                pending.appendleft(clip)
                self.log.write({"clip": name, "event": "retry", "message": why})
            else:
                self._record(clip, "failed", f"{why}: no retries left (killed, out of host memory or node lost?)")
            return False
        except self.ray.exceptions.RayError as e:  # the task itself broke (e.g. Ctrl-C reached the worker)
            outcome = {"status": "cancelled" if cancelling else "failed",
                       "message": "cancelled by the user" if cancelling else f"internal error: {type(e).__name__}"}
        rec.seconds, rec.worker = outcome.get("seconds"), f"{outcome.get('node')}:{outcome.get('pid')}"
        if outcome["status"] == "done":
            outcome = self._deliver(clip, outcome.get("payload"))
        self._record(clip, outcome["status"], outcome.get("message", ""))
        return True

    def _deliver(self, clip: dict, payload: dict | None) -> dict:
        """A result that came back through the object store is written here (with its .blend); then the
        job file that ``--resume`` reads."""
        result = Path(clip["spec"]["out"])
        blend = result.with_suffix(".blend")
        if payload is not None:
            write_bytes_atomic(result, payload["result"])
            if clip["blend"] or clip.get("export"):
                try:
                    if clip["blend"]:
                        write_blend(result, blend)
                    if clip.get("export"):
                        export_in_child(result, clip["export"])
                except BaseException as e:
                    result.unlink(missing_ok=True)  # a clip that did not finish leaves no file
                    if not isinstance(e, StchainError):
                        raise
                    return {"status": "failed", "message": str(e)}
        self.records[clip["name"]].blend = str(blend) if clip["blend"] else ""
        write_json_atomic(sidecar(result), {"hash": self.hashes[clip["name"]], "job": clip["spec"]})
        self.ran += 1
        return {"status": "done"}

    def _record(self, clip: dict, status: str, message: str) -> None:
        rec = self.records[clip["name"]]
        rec.status, rec.message = status, message
        if status != "done":
            rec.result = ""
        self.log.write({"clip": clip["name"], "event": status, "message": message})

    def _cancel(self) -> None:
        """Ask running clips to stop between steps, give them ``CANCEL_GRACE_S``, then end all workers."""
        for actor, _ in self.busy.values():
            actor.cancel.remote()
        deadline = time.monotonic() + CANCEL_GRACE_S
        try:
            while self.busy and time.monotonic() < deadline:
                ready, _ = self.ray.wait(list(self.busy), num_returns=1, timeout=POLL_S)
                for ref in ready:  # a clip that finished meanwhile is kept, the others say "cancelled"
                    self._finish(ref, self.busy.pop(ref)[1], deque(), cancelling=True)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            pass
        for actor in self.info:
            self.ray.kill(actor)
