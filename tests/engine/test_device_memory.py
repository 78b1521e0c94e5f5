"""Consumer cards: parts cast on the host before they move, loaded when first used (stage I after
stage 0 is released), offload keeping one model on the device, memory planned from free bytes, an
out-of-memory while loading as one line, and the OOM retry's smaller chunks kept for the run."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from blender_stchain.contracts.progress import Reporter
from blender_stchain.contracts.settings import Settings
from blender_stchain.engine.backbone import load_backbone
from blender_stchain.engine.backbone.facade import STAGE0_PARTS
from blender_stchain.engine.backbone.parts import GIB, Parts, plan_memory
from blender_stchain.engine.device import Facts, decide, runtime
from blender_stchain.engine.weights import load_component
from blender_stchain.engine.weights.loading import build
from blender_stchain.engine.weights.random_checkpoints import component_config
from tests.conftest import DATA, REPO
from tests.helpers import quick_job


class Copies(TorchDispatchMode):
    """Every tensor copy (``_to_copy``): (dtype in, dtype out, device out)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._to_copy.default:
            self.seen.append((args[0].dtype, out.dtype, out.device.type, out.numel()))
        return out


def test_a_part_is_cast_on_the_host_then_moved(tiny_weights):
    with Copies() as copies:
        den = load_component(tiny_weights, "denoiser", device="meta", compute=torch.bfloat16)
    moves = [c for c in copies.seen if c[2] == "meta"]
    casts = [c for c in copies.seen if c[0] != c[1]]
    assert moves and all(a == b for a, b, _, _ in moves)  # nothing changes dtype on the device
    assert casts and all(device == "cpu" for _, _, device, _ in casts)  # every cast happened on the host
    linear = [m.weight for m in den.modules() if isinstance(m, torch.nn.Linear)]
    norms = [p for n, p in den.named_parameters() if "norm" in n]
    assert linear and all(w.dtype == torch.bfloat16 and w.is_meta for w in linear)
    assert norms and all(p.dtype == torch.float32 for p in norms)


def test_parts_load_when_first_used_and_stage_one_after_stage_zero_is_released(tiny_weights):
    bb = load_backbone(tiny_weights, allow_random=True)
    assert not any(bb.models.is_loaded(n) for n in bb.models) and set(bb.models) == set(load_backbone.__defaults__[2])
    assert all(p.is_meta for p in bb.models.spec("denoiser").parameters())  # its shapes, nothing read
    bb.models["transformer"], bb.models["image_encoder_dinov2"]
    bb.release()
    bb.models["denoiser"]
    log = bb.models.log
    assert log.index(("load", "denoiser")) > max(log.index(("release", n)) for n in STAGE0_PARTS)


def test_offload_keeps_one_model_on_the_device_and_moves_them_in_order(tiny_weights):
    bb = load_backbone(tiny_weights, allow_random=True)
    bb.models.set_offload(True)
    for name in ("vae", "image_encoder_dinov2", "vae", "vae", "denoiser"):
        bb.models[name]
    assert bb.models.log == [("load", "vae"), ("out", "vae"), ("load", "image_encoder_dinov2"),
                             ("out", "image_encoder_dinov2"), ("in", "vae"), ("out", "vae"), ("load", "denoiser")]


def full_parts():
    names = ("image_encoder_dinov2", "dinov2", "transformer", "vae", "denoiser")
    return Parts(torch.device("cuda"), {n: None for n in names},
                 specs=lambda n: build(n, component_config(n, "full"), "meta"))


@pytest.fixture(scope="module")
def parts():
    return full_parts()


def test_memory_plan_from_free_bytes(parts):
    s = Settings()
    roomy, notes = plan_memory(parts, torch.bfloat16, "chain", s, 40 * GIB, STAGE0_PARTS)
    assert not parts.offload and notes == [] and roomy.decode_chunk == s.decode_chunk
    card12, notes = plan_memory(parts, torch.bfloat16, "chain", s, 11 * GIB, STAGE0_PARTS)
    assert not parts.offload and notes == [] and 16_384 <= card12.decode_chunk < s.decode_chunk
    card8, notes = plan_memory(parts, torch.bfloat16, "chain", s, int(7.5 * GIB), STAGE0_PARTS)
    assert parts.offload and len(notes) == 1 and "7.5 GiB free on cuda" in notes[0] and "offload" in notes[0]
    forced, notes = plan_memory(parts, torch.bfloat16, "chain", s.updated(offload="none"), int(7.5 * GIB), STAGE0_PARTS)
    assert not parts.offload and notes == []
    plan_memory(parts, torch.bfloat16, "chain", s.updated(offload="models"), None, STAGE0_PARTS)  # a CPU
    assert parts.offload


LOAD_OOM = """
import json, resource, sys
from safetensors import safe_open  # noqa: F401 (its library mapped before the cap)
from blender_stchain.contracts.errors import StchainError
from blender_stchain.engine.backbone import load_backbone
bb = load_backbone(sys.argv[1], allow_random=True)
bb.models.spec("denoiser")
vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm, resource.RLIM_INFINITY))  # every new block fails from here
try:
    bb.models["denoiser"]
    print(json.dumps({"loaded": True}))
except StchainError as e:
    print(json.dumps({"error": str(e)}))
"""


def test_out_of_memory_while_loading_is_one_line(tiny_weights):
    proc = subprocess.run([sys.executable, "-c", LOAD_OOM, str(tiny_weights)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "error": "out of memory loading the denoiser weights into host memory: close other programs"}


def test_the_oom_retry_keeps_its_smaller_chunks_for_later_windows():
    from blender_stchain.engine.pipeline import _retry_smaller

    calls, warnings = [], []
    r = SimpleNamespace(backbone=SimpleNamespace(device=torch.device("cpu")), settings=Settings(),
                        rep=Reporter(lambda e: warnings.append(e.message), None, {"windows": 1.0}))

    def window(r, settings):
        calls.append(settings.decode_chunk)
        if len(calls) == 1:
            np.empty(1 << 50, np.uint8)  # a real allocation failure
        return "done"

    assert [_retry_smaller(r, lambda settings: window(r, settings)) for _ in range(3)] == ["done"] * 3
    assert calls == [262_144, 65_536, 65_536, 65_536] and r.settings.decode_chunk == 65_536
    assert len(warnings) == 1 and warnings[0].endswith("kept for the rest of the run")


@pytest.mark.slow
def test_offload_on_a_cpu_gives_the_same_result_in_the_right_order(tiny_weights, tmp_path, monkeypatch):
    from blender_stchain.contracts.result import load_result
    from blender_stchain.engine import pipeline

    results, held, warned = {}, {}, {}
    # the "models" run also sees a CUDA build whose driver is too old: auto runs on the CPU and says so once
    old_driver = Facts("2.7.0+cu128", "12.8", False, driver="470.82")

    def loader(*args):  # the pipeline's own loader, kept to read its log (a run's own backbone: released)
        held["bb"] = load_backbone(*args)
        if mode == "models":
            held["bb"].rt = runtime(facts=old_driver)
        return held["bb"]

    monkeypatch.setattr(pipeline, "load_backbone", loader)
    for mode in ("none", "models"):
        job = quick_job(DATA / "rgba_frames/davis_camel", tmp_path / f"{mode}.safetensors", tiny_weights,
                        settings={"offload": mode})
        events = []
        results[mode] = load_result(pipeline.run(job, on_event=events.append))
        warned[mode] = [e["message"] for e in events if e["event"] == "warning" and "driver" in e["message"]]
        log = held["bb"].models.log
        assert held["bb"].models.offload == (mode == "models")
        first_stage1 = min(log.index(("load", n)) for n in ("dinov2", "denoiser"))
        assert first_stage1 > max(log.index(("release", n)) for n in STAGE0_PARTS)
        if mode == "models":  # one model at a time: every move in follows the resident's move out
            on = set()
            for what, name in log:
                on = {name} if what in ("load", "in") else on - {name}
                assert len(on) <= 1
    assert warned == {"none": [], "models": [decide(old_driver).warnings[0]]}
    assert warned["models"][0].endswith("running on the CPU (slow) instead")
    assert np.array_equal(results["none"].vertices, results["models"].vertices)
    assert np.array_equal(results["none"].world_to_camera, results["models"].world_to_camera)
