"""Exports through Blender's own exporters, imported back with Blender's own importers into a fresh
scene and compared at every frame with the scene the scene writer builds from the same result."""

import subprocess
import sys

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = pytest.mark.blender

from blender_stchain import cli_export  # noqa: E402
from blender_stchain.bl import scene_writer as sw  # noqa: E402
from blender_stchain.contracts.result import load_result  # noqa: E402
from tests.blender.roundtrip import compare, imported, sample  # noqa: E402
from tests.blender.synth import result_from_npz  # noqa: E402
from tests.conftest import DATA, REPO  # noqa: E402

NPZ = DATA / "animated_glb" / "mushroom.npz"
FPS = 30.0
VERTEX_BOUND, CAMERA_BOUND, FOV_BOUND_DEG = 1e-4, 1e-4, 0.05


def synthetic(path, shifted: bool, frames=None, npz=NPZ, written_as="object_moves", fps="30"):
    """A result file: the animated mushroom, an orbiting camera, 30 fps footage from frame 5; ``shifted``
    moves the principal point off the image centre (a lens shift in Blender)."""
    r = result_from_npz(npz, frames=frames, first_frame=5, size=(854, 480), tracks=0)
    r.metadata["settings"] = {"camera_mode": written_as}
    if shifted:
        r.K[0, 2] += 31.0
        r.K[1, 2] -= 17.0
    r.metadata["footage"] = {"fps": fps}
    return r.save(path)


def reference(result_path, mode="auto", fps=FPS):
    """The scene the writer builds from the result (what a .blend of it holds), sampled at every frame."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    result = load_result(result_path)
    sw.apply(result, scene, sw.WriteOptions(fps=fps, mode=mode, cache_dir=str(result_path.parent)))
    frames = result.frame_numbers
    return sample(scene, frames), frames, result.image_size


def export(result_path, *outs, presentation=None):
    warnings = []
    view = cli_export.open_result(result_path)
    from blender_stchain.bl.export import export_result

    view = cli_export.presented(view, cli_export.PRESENTATIONS[presentation] if presentation else view.presentation)
    export_result(view, outs, warn=warnings.append)
    return warnings


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    folder = tmp_path_factory.mktemp("short")
    return synthetic(folder / "shifted.safetensors", True), synthetic(folder / "centred.safetensors", False)


def test_reference_scene_moves(short):
    """The comparison can fail: the reference changes between frames far beyond the bounds."""
    ref, frames, _ = reference(short[0])
    later = {f: ref[frames[min(i + 1, len(frames) - 1)]] for i, f in enumerate(frames)}
    w = compare(ref, later)
    print(w)
    assert w.vertices > 100 * VERTEX_BOUND and w.camera > 100 * CAMERA_BOUND


@pytest.mark.parametrize("ext", [".abc", ".usdc", ".usda", ".usd"])
def test_alembic_usd_round_trip_short(short, tmp_path, ext):
    """Alembic and USD carry the mesh at every frame, the camera and its lens shift."""
    ref, frames, size = reference(short[0])
    out = tmp_path / f"clip{ext}"
    assert export(short[0], out) == []
    w = compare(ref, imported(out, frames, FPS, size))
    print(ext, w, out.stat().st_size)
    assert w.frames == 16
    assert w.vertices <= VERTEX_BOUND and w.camera <= CAMERA_BOUND and w.fov_deg <= FOV_BOUND_DEG
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file or cache left


@pytest.mark.parametrize("ext", [".glb", ".gltf"])
def test_gltf_round_trip_short(short, tmp_path, ext):
    """glTF: morph targets sampled every frame plus the camera, one animation: exact at every frame."""
    ref, frames, size = reference(short[1])
    out = tmp_path / f"clip{ext}"
    assert export(short[1], out) == []  # a centred principal point: nothing is dropped, no warning
    w = compare(ref, imported(out, frames, FPS, size))
    print(ext, w)
    assert w.vertices <= VERTEX_BOUND and w.camera <= CAMERA_BOUND and w.fov_deg <= FOV_BOUND_DEG
    expected = {out.name} | ({"clip.bin"} if ext == ".gltf" else set())
    assert {p.name for p in tmp_path.iterdir()} == expected


def test_ntsc_frame_rate_keeps_every_frame(tmp_path):
    """29.97 fps footage (30000/1001): the files' seconds map back onto the same frames in every format."""
    result = synthetic(tmp_path / "r.safetensors", False, fps="30000/1001")
    ref, frames, size = reference(result, fps=30000 / 1001)
    outs = [tmp_path / f"clip{ext}" for ext in (".abc", ".usdc", ".glb")]
    export(result, *outs)
    for out in outs:
        w = compare(ref, imported(out, frames, 30000 / 1001, size))
        print(out.suffix, w)
        assert w.vertices <= VERTEX_BOUND and w.camera <= CAMERA_BOUND and w.fov_deg <= FOV_BOUND_DEG


def test_gltf_drops_the_lens_shift_with_a_warning(short, tmp_path):
    """glTF has no lens shift: the export says so, and the import shows what was lost (the frame edges
    move by more than the bound); the mesh and the camera pose still match."""
    ref, frames, size = reference(short[0])
    out = tmp_path / "clip.glb"
    warnings = export(short[0], out)
    assert len(warnings) == 1 and "no lens shift" in warnings[0] and ".abc and .usd keep it" in warnings[0]
    w = compare(ref, imported(out, frames, FPS, size))
    print(w)
    assert w.vertices <= VERTEX_BOUND and w.camera <= CAMERA_BOUND and w.fov_deg > FOV_BOUND_DEG


def camera_space(frame):
    """A frame's vertices as the camera sees them (the image is a function of these alone)."""
    inv = np.linalg.inv(frame.camera)
    return frame.points @ inv[:3, :3].T + inv[:3, 3]


@pytest.mark.parametrize("presentation,written_as", [("camera", "object_moves"), ("object", "camera_moves"),
                                                     ("object", "object_moves")])
def test_presentation_flag_keeps_every_image(tmp_path, presentation, written_as):
    """``--presentation``: the motion moves between the mesh and the camera and every frame's view of
    the mesh stays the same (camera-space points match); "object" from a "camera moves" result holds
    the camera still, "camera" leaves the mesh without its rigid motion (its centroid moves less), and
    the result's own presentation exports it as written."""
    result = synthetic(tmp_path / "r.safetensors", True, written_as=written_as)
    ref, frames, size = reference(result)
    out = tmp_path / "clip.abc"
    export(result, out, presentation=presentation)
    got = imported(out, frames, FPS, size)
    worst = max(float(np.abs(camera_space(ref[f]) - camera_space(got[f])).max()) for f in frames)
    diag = float(np.linalg.norm(np.ptp(ref[frames[0]].points, axis=0)))
    cams = np.stack([got[f].camera for f in frames])
    drift = {k: float(np.ptp(np.stack([s[f].points.mean(0) for f in frames]), axis=0).max()) for k, s in
             (("ref", ref), ("got", got))}
    print(presentation, worst / diag, drift, np.ptp(cams, axis=0).max())
    assert worst / diag <= VERTEX_BOUND
    if written_as == "object_moves" and presentation == "object":
        w = compare(ref, got)
        assert w.vertices <= VERTEX_BOUND and w.camera <= CAMERA_BOUND
    elif presentation == "object":
        assert np.ptp(cams, axis=0).max() < 1e-6 and np.ptp(np.stack([ref[f].camera for f in frames]), 0).max() > 0.1
    else:
        assert drift["got"] < 0.1 * drift["ref"]


def test_bad_inputs_one_line_no_file(short, tmp_path):
    """Not our file, an unknown extension, a folder that cannot be written: one line, exit 1, nothing left."""
    not_ours = tmp_path / "weights.safetensors"
    import safetensors.numpy

    safetensors.numpy.save_file({"w": np.zeros(4, np.float32)}, str(not_ours))
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        ([str(not_ours), "--out", str(tmp_path / "a.abc")], "is not a blender_stchain result (no result metadata"),
        ([str(text), "--out", str(tmp_path / "a.abc")], "is not a blender_stchain result"),
        ([str(short[0]), "--out", str(tmp_path / "a.fbx")], "a.fbx: unknown export format; use one of .abc"),
        ([str(short[0]), "--out", str(blocker / "a.abc")], "cannot write a.abc: folder"),
        ([str(short[0]), "--out", str(tmp_path / "b.abc"), "--out", str(tmp_path / "b.obj")], "b.obj: unknown"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, line in cases:
        p = subprocess.run([sys.executable, "-m", "blender_stchain", "export", *argv], capture_output=True,
                           text=True, timeout=300, cwd=REPO)
        err = [x for x in p.stderr.splitlines() if x.strip()]
        print(err)
        assert p.returncode == 1 and len(err) == 1 and err[0].startswith("error: ") and line in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.fixture
def locked(tmp_path):
    """A folder nobody may write to: read-only for a user, immutable for root (who ignores modes)."""
    import os
    import shutil

    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    root = os.geteuid() == 0
    if root and (shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode):
        pytest.skip("running as root on a file system without chattr +i: no folder is unwritable")
    yield folder
    if root:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def test_unwritable_folder_leaves_nothing(short, locked):
    p = subprocess.run([sys.executable, "-m", "blender_stchain", "export", str(short[0]), "--out",
                        str(locked / "a.abc")], capture_output=True, text=True, timeout=300, cwd=REPO)
    err = [x for x in p.stderr.splitlines() if x.strip()]
    print(err)
    assert p.returncode == 1 and err == [f"error: cannot write a.abc: folder {locked} is not writable; choose "
                                         "another --out"]
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("command", ["export", "run"])
def test_without_bpy_one_line(short, tmp_path, command):
    """No bpy module: ``export`` and ``run --out X.abc`` (before its job) stop with one line that says how to
    get it, exit 1, nothing written."""
    out = str(tmp_path / "a.abc")
    argv = ["export", str(short[0]), "--out", out] if command == "export" else \
        ["run", "--footage", str(DATA / "rgba_frames" / "davis_camel"), "--out", out, "--weights", str(tmp_path)]
    code = f"import sys; sys.modules['bpy'] = None; from blender_stchain.cli import main; sys.exit(main({argv!r}))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    err = [x for x in p.stderr.splitlines() if x.strip()]
    print(err)
    assert p.returncode == 1 and len(err) == 1 and "pip install bpy" in err[0] and "blender -b" in err[0]
    assert list(tmp_path.iterdir()) == []
