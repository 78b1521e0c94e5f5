"""``eval BENCH``: run (or read) a result per clip and method, score it, write ``metrics.json``.

Results land in ``OUT/results/CLIP/METHOD.safetensors`` (the same layout ``--results`` reads), so a
GPU run can be scored again later, or elsewhere, without running the model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..contracts.result import json_default
from .bench import Clip, read_bench
from .errors import EvalError
from .metrics.actionbench import PROTOCOL, protocol
from .scoring import score

ORACLE_LABEL = "ORACLE: GT tracks through dense motion + camera (proves the harness, not the model)"
SMOKE_LABEL = "SMOKE TEST: random weights, not a reconstruction"


def evaluate(bench, out, methods=("chain",), results=None, oracle=False, preset="balanced", overrides=None,
             weights=None, device="auto", limit=None, counts=None, allow_random_weights=False, log=print,
             precision="auto") -> dict:
    """Score every clip of ``bench`` for each method; returns (and writes) the metrics dict."""
    from ..contracts.settings import preset as make_settings

    clips = read_bench(bench, limit)
    out = Path(out)
    counts = {**PROTOCOL, **(counts or {})}
    try:
        settings = make_settings(preset, **(overrides or {}))
    except (ValueError, TypeError) as e:
        raise EvalError(f"settings: {e}") from None
    methods = ("oracle",) if oracle else tuple(methods)
    if counts.get("device", "cpu") == "cpu" and counts["n_pts_icp"] >= PROTOCOL["n_pts_icp"]:
        log("[eval] note: ActionBench's ICP (10,000 points, 200 steps, 24 starts) takes ~5 min per frame on a "
            "CPU (measured on 2 cores); --icp-points 1000 gives a quick score marked 'reduced'")
    rows = []
    job_args = dict(weights=weights, device=device, precision=precision, allow_random_weights=allow_random_weights,
                    preset=preset, settings=dict(overrides or {}))
    for clip in clips:
        for method in methods:
            t = time.perf_counter()
            result, memory = _result(clip, method, out, results, settings, job_args)
            metrics = score(clip, result, counts)
            metrics.update(clip=clip.name, method=method, frames=clip.frames, memory=memory,
                           eval_seconds=round(time.perf_counter() - t, 2))
            rows.append(metrics)
            log(f"[eval] {clip.name} / {method}: CD-3D {metrics['cd_3d']:.4f} CD-4D {metrics['cd_4d']:.4f} "
                f"CD-M {metrics['cd_m']:.4f}")
    report = {
        "bench": str(bench),
        "label": _label(rows, oracle),
        "smoke_test": any(r["smoke_test"] for r in rows),
        "protocol": protocol(**counts),
        "counts": counts,
        "preset": preset,
        "settings": dict(overrides or {}),
        "clips": rows,
        "mean": {m: mean_metrics([r for r in rows if r["method"] == m]) for m in methods},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=1, default=json_default), encoding="utf-8")
    return report


def _label(rows, oracle) -> str:
    if oracle:
        return ORACLE_LABEL
    return SMOKE_LABEL if any(r["smoke_test"] for r in rows) else "model run (non-random weights: see the results' metadata)"


def _result(clip: Clip, method, out, results, settings, job_args: dict):
    """The result of ``method`` on ``clip``: oracle, read from ``results``, or run now (a JobSpec of
    ``job_args``: weights, device, precision, preset, settings, allow_random_weights); plus peak memory."""
    from ..contracts.result import load_result

    if method == "oracle":
        from .oracle import oracle_result

        return oracle_result(clip, settings), None
    if results is not None:
        path = Path(results) / clip.name / f"{method}.safetensors"
        if not path.exists():
            raise EvalError(f"no result {path}; run `eval` without --results to make it")
        return load_result(path), None
    from ..contracts.job import JobSpec
    from ..engine.pipeline import run

    path = out / "results" / clip.name / f"{method}.safetensors"
    job = JobSpec(footage=str(clip.footage), out=str(path), method=method,
                  masks=None if clip.masks is None else str(clip.masks), **job_args)
    cuda = _reset_cuda_peak()
    run(job)
    return load_result(path), _peak_memory(cuda)


def _reset_cuda_peak() -> bool:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return True
    return False


def _peak_memory(cuda: bool) -> dict:
    """Peak GPU memory of this run (torch allocator) and the process's peak resident memory so far
    (VmHWM: it never goes down, so for the second clip on it is an upper bound)."""
    out = {}
    if cuda:
        import torch

        out["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["process_peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


METRICS = (("cd_3d", None), ("cd_4d", None), ("cd_m", None), ("focal_error", "camera"), ("rotation_deg", "camera"),
           ("centre_error", "camera"), ("reprojection_px", "camera"), ("delta_avg", "tracks"),
           ("occlusion_accuracy", "tracks"), ("average_jaccard", "tracks"))


def mean_metrics(rows) -> dict:
    """Plain mean over clips of every metric a clip has (ActionBench: mean over samples)."""
    out = {}
    for name, group in METRICS:
        vals = [(r.get(group) or {}).get(name) if group else r.get(name) for r in rows]
        vals = [v for v in vals if v is not None]
        if vals:
            out[name] = float(np.mean(vals))
    seconds = [sum(r["seconds"].values()) for r in rows if r.get("seconds")]
    if seconds:
        out["seconds"] = float(np.mean(seconds))
    return out
