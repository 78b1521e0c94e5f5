"""The job and result contracts (docs/architecture.md 3) and the bpy-free engine rule."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_stchain.contracts.errors import JobError
from blender_stchain.contracts.job import JobSpec
from blender_stchain.contracts.result import Result, ResultWriter, load_result

REPO = Path(__file__).resolve().parents[2]


def make_result(T=5, Nv=40, L=6, seed=0):
    rng = np.random.default_rng(seed)
    return Result(
        faces=rng.integers(0, Nv, (30, 3)), vertices=rng.normal(size=(T, Nv, 3)),
        confidence=rng.uniform(size=(T, Nv)), frame_numbers=np.arange(3, 3 + T), K=np.diag([500.0, 500, 1]),
        world_to_camera=np.tile(np.eye(4), (T, 1, 1)), image_size=np.array([640, 360]),
        tracks_2d=rng.uniform(0, 300, (T, L, 2)), track_visible=rng.integers(0, 2, (T, L)),
        metadata={"method": "chain", "settings": {"top_k": 8}},
    )


def test_result_round_trip_keeps_every_tensor_and_metadata(tmp_path):
    r = make_result()
    path = r.save(tmp_path / "result.safetensors")
    back = load_result(path)
    for name, value in r.tensors().items():
        got = back.tensors()[name]
        assert got.dtype == value.dtype and np.array_equal(got, value), name
    assert back.metadata["settings"] == {"top_k": 8} and back.metadata["schema_version"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["result.safetensors"]


def test_streamed_windows_equal_one_write(tmp_path):
    r = make_result(T=9)
    w = ResultWriter(tmp_path / "streamed.safetensors")
    whole = ("faces", "K", "image_size", "world_to_camera")
    per_frame = {k: v for k, v in r.tensors().items() if k not in whole}
    for a, b in [(0, 4), (4, 8), (8, 9)]:
        w.add_frames(**{k: v[a:b] for k, v in per_frame.items()})
    assert np.array_equal(w.spooled("vertices"), r.vertices)
    back = load_result(w.finish(r.metadata, **{k: getattr(r, k) for k in whole}))
    assert np.array_equal(back.vertices, r.vertices) and np.array_equal(back.frame_numbers, r.frame_numbers)
    assert np.array_equal(back.world_to_camera, r.world_to_camera)


def test_spooled_frames_read_and_transform_in_place(tmp_path):
    r = make_result(T=9)
    w = ResultWriter(tmp_path / "t.safetensors")
    w.add_frames(vertices=r.vertices[:5], confidence=r.confidence[:5], frame_numbers=r.frame_numbers[:5])
    w.add_frames(vertices=r.vertices[5:], confidence=r.confidence[5:], frame_numbers=r.frame_numbers[5:])
    v = w.spooled("vertices")
    assert len(v) == 9 and np.array_equal(v[3], r.vertices[3]) and np.array_equal(v[-1], r.vertices[-1])
    assert np.array_equal(v[2:7], r.vertices[2:7]) and v[7:2].shape == (0, *r.vertices.shape[1:])
    with pytest.raises(IndexError):
        v[9]
    w.transform("vertices", lambda a, b, block: block * 2 + np.arange(a, b)[:, None, None], chunk=4)
    expected = r.vertices * 2 + np.arange(9)[:, None, None]
    assert np.allclose(w.spooled("vertices"), expected)
    with pytest.raises(ValueError, match="shape"):
        w.transform("vertices", lambda a, b, block: block[:, :1])
    back = load_result(w.finish(r.metadata, faces=r.faces, K=r.K, image_size=r.image_size,
                                world_to_camera=r.world_to_camera))
    assert np.allclose(back.vertices, expected) and np.array_equal(back.confidence, r.confidence)


def test_aborted_writer_leaves_nothing(tmp_path):
    r = make_result()
    w = ResultWriter(tmp_path / "x.safetensors")
    w.add_frames(vertices=r.vertices, confidence=r.confidence, frame_numbers=r.frame_numbers,
                 world_to_camera=r.world_to_camera)
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_inconsistent_result_is_refused():
    r = make_result()
    with pytest.raises(ValueError, match="confidence"):
        Result(**{**r.tensors(), "confidence": np.ones((2, 2))})
    with pytest.raises(ValueError, match="faces"):
        Result(**{**r.tensors(), "faces": np.array([[0, 1, 999]])})


@pytest.mark.parametrize("bad, message", [
    ({"method": "magic"}, "method"),
    ({"frames": [5, 2]}, "frames"),
    ({"frames": [0, 2]}, "frames"),
    ({"device": "tpu"}, "device"),
    ({"settings": {"nope": 1}}, "unknown setting"),
    ({"settings": {"top_k": {"__class__": "x"}}}, "top_k"),
    ({"extra": 1}, "unknown field"),
])
def test_job_schema_rejects_bad_fields(bad, message):
    with pytest.raises(JobError, match=message):
        JobSpec.from_dict({"footage": "a", "out": "b", **bad})


def test_job_file_round_trip(tmp_path):
    job = JobSpec(footage="clip", out="r.safetensors", frames=(2, 9), settings={"top_k": 4})
    back = JobSpec.load(job.save(tmp_path / "job.json"))
    assert back == job and back.resolved_settings().top_k == 4
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(JobError, match="JSON object"):
        JobSpec.load(tmp_path / "bad.json")


def test_engine_never_imports_bpy():
    code = (
        "import importlib, pkgutil, sys\n"
        "import blender_stchain.engine as e\n"
        "names = [m.name for m in pkgutil.walk_packages(e.__path__, 'blender_stchain.engine.')]\n"
        "for n in names:\n"
        "    importlib.import_module(n)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('bpy', 'mathutils', 'bpy_extras'))\n"
        "print(len(names), bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    engine = REPO / "blender_stchain" / "engine"
    expected = sum(1 for p in engine.rglob("*.py") if p.name != "__init__.py") + sum(
        1 for p in engine.rglob("__init__.py") if p.parent != engine)
    assert int(out.stdout.split()[0]) == expected  # every module (and package) was imported


def test_mask_source_table_keeps_names_and_saved_numbers_unique():
    """contracts/masks.py is the one list of mask sources: a new line must not reuse a name or the
    number .blend files store, and both spellings (CLI, Blender enum id) find the same source."""
    from blender_stchain.contracts.errors import FootageError
    from blender_stchain.contracts.masks import MASK_SOURCES, blender_enum_items, mask_source

    names, numbers = [s.name for s in MASK_SOURCES], [s.saved_as for s in MASK_SOURCES]
    assert len(set(names)) == len(names) and len(set(numbers)) == len(numbers)
    assert all(n == n.lower() and n.isidentifier() for n in names)
    assert mask_source("CHROMA") is mask_source("chroma") and mask_source("mask").needs_mask_datablock
    assert [item[0] for item in blender_enum_items()] == [n.upper() for n in names]
    assert "the whole frame, background included" in mask_source("none").description
    with pytest.raises(FootageError, match="mask source 'sam' is not one of none, alpha, segment, mask, luma, chroma"):
        mask_source("sam")


def test_an_error_line_passed_on_gets_one_prefix():
    from blender_stchain.contracts.errors import StchainError
    from blender_stchain.contracts.options import one_line

    assert one_line(StchainError("error: masks folder\n  is empty")) == "error: masks folder is empty"
    assert one_line(StchainError("no error: here")) == "error: no error: here"
