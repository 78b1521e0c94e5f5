"""Segmentation jobs for the worker process: the plan of the scene's prompts, the runner that writes the
masks, and Generate's chain (segmentation, then the model) when no cached masks match."""

from __future__ import annotations

from pathlib import Path

from ...contracts.errors import StchainError
from .. import footage, prefs
from ...contracts.events import FINAL
from ..runner import ProcessRunner, Threaded, cancel_path
from . import markers


def plan_for(props, src: footage.Source, frames: tuple[int, int] | None):
    """(footage source, frames, prompts, cache folder) of the job settings ``props`` on ``src``."""
    if props.mask != "SEGMENT":
        raise StchainError("Set Mask to 'Segment Object' first (4D Mesh panel)")
    frames = frames or (1, src.count)
    prompts = markers.collect(props, src, frames)
    return src, frames, prompts, markers.cache_dir(src.path, frames, prompts, props.segment_model)


def segmentation_runner(context, the_plan, frames_dir: Path, job_dir: Path, weights=None, device=None, *,
                        model: str | None = None, overlay: bool = True, allow_random: bool = False):
    """The worker process that writes the masks of ``the_plan`` from an exported frames folder (``model``:
    the SAM 2.1 size, default the scene's; ``overlay``: also the footage under its masks, for the preview;
    ``allow_random``: accept make-random SAM 2.1 weights, a smoke test)."""
    p = prefs.get(context)
    _, _, prompts, folder = the_plan
    job = markers.write_job(job_dir / "segment.json", frames_dir, folder, prompts,
                            model or context.scene.stchain.segment_model, weights or prefs.weights_dir(context),
                            device or (p.device if p else "auto"), overlay=overlay, allow_random=allow_random)
    python = prefs.python(context)
    return ProcessRunner(["-m", markers.WORKER, job], cancel_file=cancel_path(job), python=python,
                         pythonpath=prefs.pythonpath(python))


class ChainRunner(Threaded):
    """Runners one after another as one job (segmentation, then the model): every event passes through,
    the first failure or a cancel ends the chain, the last runner's final event is the chain's."""

    def __init__(self, runners):
        super().__init__()
        self.runners = list(runners)
        self.current = None

    def cancel(self) -> None:
        self._cancel_requested = True
        if self.current is not None:
            self.current.cancel()

    def _run(self):
        final = None
        for runner in self.runners:
            if self._cancel_requested:
                break
            self.current = runner.start()
            final = runner.wait(on_event=lambda e: None if e.get("event") in FINAL else self._queue.put(e))
            if final.get("event") != "done":
                break
        self._finish(final)


def masks_for_generate(context, src, frames, frames_dir: Path, job_dir: Path, runner, weights=None, device=None,
                       allow_random: bool = False):
    """Generate with "Segment Object": the cached masks of the current prompts, else segmentation runs first
    (same exported frames) and its masks are cached for the next time. -> (masks folder, runner)."""
    the_plan = plan_for(context.scene.stchain, src, frames)
    _, frames, _, folder = the_plan
    if markers.cached(folder, frames):
        return str(folder), runner
    first = segmentation_runner(context, the_plan, frames_dir, job_dir, weights, device, allow_random=allow_random)
    return str(folder), ChainRunner([first, runner])
