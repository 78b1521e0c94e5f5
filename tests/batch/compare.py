"""What "identical to `run`" means for a batch result, and the clips the batch tests use.

Every tensor is bit-identical (same names, dtypes, shapes and bytes) and the metadata is equal except
``seconds``, ``model_seconds`` and ``time_estimate``, the measured fields (stage wall times, their model-call part,
the time estimate's calibration and unit times); the files as a whole differ by those numbers.
"""

import json

from blender_stchain.contracts.safetensors_io import read_header

from ..conftest import DATA

MEASURED = ("seconds", "model_seconds", "time_estimate")
QUICK = ["anchor_steps=4", "grid_resolution=64", "coarse_resolution=32", "face_budget=3000", "landmarks=128",
         "candidate_resolution=48"]
CAMEL = {"footage": str(DATA / "rgba_frames/davis_camel"), "frames": [1, 6], "name": "camel"}
HORSE = {"footage": str(DATA / "horsejump_gt/video"), "masks": str(DATA / "horsejump_gt/masks"), "frames": [1, 6],
         "name": "horse"}


def tensors_and_metadata(path) -> tuple[dict, dict]:
    h = read_header(path)
    raw = path.read_bytes() if hasattr(path, "read_bytes") else open(path, "rb").read()
    tensors = {n: (i.dtype, tuple(i.shape), raw[h.data_start + i.begin:h.data_start + i.end])
               for n, i in h.tensors.items()}
    meta = json.loads(h.metadata["stchain"])
    return tensors, {k: v for k, v in meta.items() if k not in MEASURED}


def assert_same_result(a, b) -> None:
    ta, ma = tensors_and_metadata(a)
    tb, mb = tensors_and_metadata(b)
    assert sorted(ta) == sorted(tb)
    for name in ta:
        assert ta[name] == tb[name], f"tensor {name} differs between {a} and {b}"
    assert ma == mb


def job_spec(job: dict, weights, out) -> dict:
    """The JobSpec fields of a test clip, as the batch builds them."""
    from blender_stchain.contracts.options import parse_overrides

    spec = {k: v for k, v in job.items() if k != "name"}
    return {**spec, "out": str(out), "weights": str(weights), "preset": "fast", "allow_random_weights": True,
            "settings": parse_overrides(QUICK)}
