"""Exports from every entry point: the bpy path's .blend and its result exported, ``--out X.abc|.glb`` of the
bpy path and of ``run``, ``-P scripts/stchain_run.py -- export``, ``batch --export``, and the panel operator."""

import json
import os
import subprocess
import sys

import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = pytest.mark.blender

from blender_stchain import cli  # noqa: E402
from blender_stchain.bl import entry  # noqa: E402
from blender_stchain.bl import scene_writer as sw  # noqa: E402
from blender_stchain.cli_export import export_in_child  # noqa: E402
from blender_stchain.contracts.result import load_result  # noqa: E402
from tests.blender.roundtrip import compare, imported, sample  # noqa: E402
from tests.blender.test_export import CAMERA_BOUND, FOV_BOUND_DEG, VERTEX_BOUND, reference, synthetic  # noqa: E402
from tests.blender.workers import stub_env  # noqa: E402
from tests.conftest import DATA, REPO  # noqa: E402

CAMEL = str(DATA / "rgba_frames" / "davis_camel")


def within(w) -> bool:
    return w.vertices <= VERTEX_BOUND and w.camera <= CAMERA_BOUND and w.fov_deg <= FOV_BOUND_DEG


def bpy_path(out, *extra):
    """``python -m blender_stchain --footage CAMEL --frames 1:6 --out OUT`` with the stand-in worker."""
    env = {**stub_env("ok"), "STCHAIN_WORKER_MODULE": "stub_worker"}
    return subprocess.run([sys.executable, "-m", "blender_stchain", "--footage", CAMEL, "--frames", "1:6", "--out",
                           str(out), *extra], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)


def test_done_when_every_format_matches_the_blend_of_the_bpy_path(tmp_path):
    """A result of the bpy path (its .blend and the result kept beside it) exported by the command to all three
    formats; each, imported back, matches that .blend at every frame."""
    blend = tmp_path / "camel.blend"
    p = bpy_path(blend)
    assert p.returncode == 0, p.stderr[-2000:]
    result = tmp_path / "camel_4dmesh.safetensors"
    outs = [tmp_path / f"camel{ext}" for ext in (".abc", ".usdc", ".glb")]
    q = subprocess.run([sys.executable, "-m", "blender_stchain", "export", str(result)] +
                       [a for o in outs for a in ("--out", str(o))], capture_output=True, text=True, timeout=300,
                       cwd=REPO)
    assert q.returncode == 0, q.stderr[-2000:]
    assert [line.split(" (")[0] for line in q.stdout.splitlines() if line.startswith("wrote ")] == \
        [f"wrote {o}" for o in outs]
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    frames = range(scene.frame_start, scene.frame_end + 1)
    ref = sample(scene, frames)
    fps = scene.render.fps / scene.render.fps_base
    size = (scene.render.resolution_x, scene.render.resolution_y)
    assert len(ref) == 6
    for out in outs:
        w = compare(ref, imported(out, frames, fps, size))
        print(out.suffix, w)
        assert within(w)


@pytest.mark.parametrize("ext", [".abc", ".glb"])
def test_bpy_path_out_is_an_export(tmp_path, ext):
    """``--out X.abc`` / ``X.glb``: no .blend, the export plus the result beside it; the export matches the
    scene the writer builds from that result (glTF: shape keys were written, whatever the size)."""
    out = tmp_path / f"camel{ext}"
    p = bpy_path(out)
    assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted([out.name, "camel_4dmesh.safetensors"])
    ref, frames, size = reference(tmp_path / "camel_4dmesh.safetensors", mode="shape_keys")
    w = compare(ref, imported(out, frames, 24.0, size))  # an image sequence: the scene keeps Blender's 24 fps
    print(w)
    assert within(w)


def test_bpy_path_refuses_pc2_to_gltf_before_the_job(tmp_path):
    p = bpy_path(tmp_path / "camel.glb", "--write-mode", "pc2")
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1] == (
        "error: --write-mode pc2 cannot be exported to glTF (it keeps only shape keys); use .abc or .usdc")
    assert list(tmp_path.iterdir()) == []


def test_blender_script_entry_exports(tmp_path, capfd):
    """``blender -b -P scripts/stchain_run.py -- export ...`` ends in ``bl.entry.main`` (here in-process)."""
    result = synthetic(tmp_path / "r.safetensors", False)
    assert entry.main(["export", str(result), "--out", str(tmp_path / "r.usda")]) == 0
    assert entry.main(["export", str(result), "--out", str(tmp_path / "r.ply")]) == 1
    err = [x for x in capfd.readouterr().err.splitlines() if x.startswith("error:")]
    assert err == ["error: r.ply: unknown export format; use one of .abc, .usd, .usdc, .usda, .glb, .gltf "
                   "(or .blend for a scene)"]
    ref, frames, size = reference(result)
    assert within(compare(ref, imported(tmp_path / "r.usda", frames, 30.0, size)))


@pytest.mark.slow
def test_run_out_abc_exports_after_the_job(tiny_weights, tmp_path):
    """``run --out X.abc``: the real pipeline (tiny random weights), the result kept beside, then the export
    in a process of its own; the export matches the scene the writer builds from that result."""
    from tests.batch.compare import QUICK
    from tests.blender.workers import WORKER_PYTHON  # `run` needs torch: the Blender-only venvs have none

    out = tmp_path / "camel.abc"
    cmd = [WORKER_PYTHON, "-m", "blender_stchain", "run", "--footage", CAMEL, "--frames", "1:6", "--out", str(out),
           "--weights", str(tiny_weights), "--allow-random-weights", "--preset", "fast", "--json"]
    cmd += [a for s in QUICK for a in ("--set", s)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.returncode == 0, p.stderr[-2000:]
    done = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{") and '"done"' in x]
    assert done and done[-1]["result"] == str(out)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["camel.abc", "camel_4dmesh.safetensors"]
    ref, frames, size = reference(tmp_path / "camel_4dmesh.safetensors")
    assert within(compare(ref, imported(out, frames, 24.0, size)))


def test_batch_worker_exports_beside_the_result(tiny_weights, tmp_path):
    """``batch --export abc,glb``: a clip's worker (a shared batch folder) writes NAME.abc and NAME.glb beside
    the result; each matches the scene the writer builds from that result."""
    pytest.importorskip("torch", reason="no torch in a Blender-only venv")
    from blender_stchain.batch.worker import ClipWorker
    from tests.batch.compare import CAMEL as CAMEL_JOB
    from tests.batch.compare import job_spec

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / ".m").write_text("t")
    worker = ClipWorker(threads=1, marker=str(out_dir / ".m"), token="t")
    clip = {"name": "camel", "spec": job_spec(CAMEL_JOB, tiny_weights, out_dir / "camel.safetensors"),
            "export": ["abc", "glb"]}
    assert worker.run(clip)["status"] == "done"
    assert sorted(p.name for p in out_dir.iterdir() if p.is_file()) == [".m", "camel.abc", "camel.glb",
                                                                        "camel.safetensors"]
    for ext, mode in ((".abc", "auto"), (".glb", "shape_keys")):
        ref, frames, size = reference(out_dir / "camel.safetensors", mode=mode)
        assert within(compare(ref, imported(out_dir / f"camel{ext}", frames, 24.0, size)))


def test_export_in_child_failure_leaves_nothing(tmp_path):
    """What ``batch --export`` and ``run --out X.abc`` call: a failed export is the command's line, no file."""
    not_ours = tmp_path / "x.safetensors"
    not_ours.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(Exception) as e:
        export_in_child(not_ours, ["abc", "usdc"])
    message = str(e.value)
    assert message.startswith("writing x.abc, x.usdc failed: ") and "is not a blender_stchain result" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.safetensors"]


def test_batch_export_option_is_checked_first(tmp_path, capfd):
    assert cli.main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--export", "abc,fbx"]) == 1
    err = [x for x in capfd.readouterr().err.splitlines() if x.strip()]
    assert err == ["error: --export fbx: not a format export writes; use some of abc,usd,usdc,usda,glb,gltf"]
    assert list(tmp_path.iterdir()) == []


def test_operator_exports_the_scene_result(registered, tmp_path):
    """*Export 4D Mesh* writes the scene's result as it is (the user's other objects stay out); a point-cached
    result refuses glTF with the reason and the way out."""
    result = load_result(synthetic(tmp_path / "r.safetensors", True))
    scene = registered
    assert not bpy.ops.stchain.export.poll()  # nothing to export yet: the button is greyed out
    bpy.ops.mesh.primitive_cube_add()  # the user's own object: not exported, selection kept
    cube = bpy.context.active_object
    sw.apply(result, scene, sw.WriteOptions(fps=30.0))
    cube.select_set(True)
    ref = sample(scene, result.frame_numbers, meshes=["4D Mesh"])
    out = tmp_path / "scene.abc"
    assert bpy.ops.stchain.export(filepath=str(out)) == {"FINISHED"}
    assert cube.select_get() and bpy.data.objects["4D Mesh"].select_get() is False
    assert within(compare(ref, imported(out, result.frame_numbers, 30.0, result.image_size)))

    bpy.ops.wm.read_factory_settings(use_empty=True)
    sw.apply(result, bpy.context.scene, sw.WriteOptions(fps=30.0, mode="pc2", cache_dir=str(tmp_path)))
    with pytest.raises(RuntimeError, match="glTF keeps a mesh's animation only as shape keys"):
        bpy.ops.stchain.export(filepath=str(tmp_path / "scene.glb"))
    assert not (tmp_path / "scene.glb").exists()
