"""Run by the bpy-only Python (``.venv-installed``), never by pytest: drives the extension as Blender installed
it, with HOME set to the tier's user folder. Nothing of the repository is importable here.

    python driver.py install ZIP
    python driver.py CASE ARGS_JSON      (a case of CASES below)

Prints one line ``REPORT {json}`` with what it found; the tests judge it.
"""

import importlib
import json
import os
import sys
import tempfile
from pathlib import Path

import bpy  # noqa: I001 (bpy first: it makes addon_utils importable)
import addon_utils

MOD = "bl_ext.user_default.blender_stchain"


def install(zip_path: str) -> dict:
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    mod = importlib.import_module(MOD)
    return {"module_file": mod.__file__, "enabled": MOD in bpy.context.preferences.addons}


def enable():
    """The installed copy, enabled in this process (the user folder keeps the install, not the enabled state)."""
    addon_utils.enable(MOD, default_set=True)
    assert hasattr(bpy.types, "STCHAIN_OT_generate"), "the installed extension did not register"
    return importlib.import_module(MOD)


def sub(name: str):
    return importlib.import_module(f"{MOD}.{name}")


def shape_keys() -> int:
    ob = bpy.data.objects.get("4D Mesh")
    keys = ob.data.shape_keys if ob is not None else None
    return len(keys.key_blocks) if keys is not None else 0


def job_record() -> dict:
    ob = bpy.data.objects.get("4D Mesh")
    return json.loads(ob["stchain"]) if ob is not None and "stchain" in ob else {}


def generate(a: dict, masks: str = "") -> dict:
    status = bpy.context.window_manager.stchain_status
    try:
        outcome = sorted(bpy.ops.stchain.generate(weights=a["weights"], device="cpu", masks=masks, quiet=True,
                                                  allow_random_weights=True, settings_json=json.dumps(a["settings"])))
    except RuntimeError as e:
        outcome = [f"RuntimeError: {e}"]
    record = job_record()
    return {"outcome": outcome, "message": status.message, "keys": shape_keys(), "result": status.result,
            "versions": record.get("result_metadata", {}).get("versions"), "masks": record.get("job", {}).get("masks"),
            "jobs_left": sorted(p.name for p in sub("bl.prefs").user_dir("jobs").iterdir())}


def set_range(props, first: int, last: int):
    props.use_frame_range, props.frame_first, props.frame_last = True, first, last


def case_clip(a: dict) -> dict:
    """Generate from a Movie Clip (a video Blender decodes), the object keyed off a plain background."""
    props = bpy.context.scene.stchain
    props.source, props.clip, props.mask = "CLIP", bpy.data.movieclips.load(a["video"]), "CHROMA"
    set_range(props, 1, a["last"])
    return generate(a)


def case_sequence(a: dict) -> dict:
    """Generate from an image sequence with a masks folder of the whole clip and a frame range."""
    props = bpy.context.scene.stchain
    props.source, props.directory, props.mask = "SEQUENCE", a["folder"], "NONE"
    set_range(props, 1, a["last"])
    return generate(a, masks=a["masks"])


def case_rgba(a: dict) -> dict:
    """Generate from RGBA frames (their alpha is the mask), then Apply Result again in a fresh scene."""
    props = bpy.context.scene.stchain
    props.source, props.directory, props.mask = "SEQUENCE", a["folder"], "ALPHA"
    set_range(props, 1, a["last"])
    report = {"generate": generate(a)}
    result = report["generate"]["result"]
    report["export"] = export_and_import(a["export_dir"])
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    try:
        outcome = sorted(bpy.ops.stchain.apply_result(filepath=result, write_mode=a["write_mode"]))
    except RuntimeError as e:
        outcome = [f"RuntimeError: {e}"]
    record = job_record()
    report["apply"] = {"outcome": outcome, "keys": shape_keys(), "result": record.get("result"),
                       "has_cache": any(m.type == "MESH_CACHE" for ob in bpy.data.objects
                                        for m in getattr(ob, "modifiers", ()))}
    return report


def export_and_import(folder: str) -> dict:
    """*Export 4D Mesh* to Alembic and glTF from the generated scene, then Blender's Alembic importer reads the
    file back: its mesh has the generated mesh's vertex count at every frame, and a camera comes with it."""
    mesh = bpy.data.objects["4D Mesh"]
    out = {"vertices": len(mesh.data.vertices), "written": {}}
    for ext in ("abc", "glb"):
        path = Path(folder) / f"export.{ext}"
        try:
            out["written"][ext] = [sorted(bpy.ops.stchain.export(filepath=str(path))), path.stat().st_size]
        except (RuntimeError, OSError) as e:
            out["written"][ext] = [f"{type(e).__name__}: {e}", 0]
    before = set(bpy.data.objects)
    bpy.ops.wm.alembic_import(filepath=str(Path(folder) / "export.abc"), as_background_job=False)
    new = [ob for ob in bpy.data.objects if ob not in before]
    scene, counts = bpy.context.scene, []
    for frame in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(frame)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        counts += [len(ob.evaluated_get(depsgraph).data.vertices) for ob in new if ob.type == "MESH"]
    out["imported"] = {"types": sorted(ob.type for ob in new), "vertex_counts": sorted(set(counts)),
                       "frames": scene.frame_end - scene.frame_start + 1}
    for ob in new:
        bpy.data.objects.remove(ob)
    return out


def case_runtime_plan(a: dict) -> dict:
    """The preferences' GPU Runtime > Plan with the zip's own build table, a stand-in nvidia-smi first on PATH."""
    os.environ["PATH"] = a["path"] + os.pathsep + os.environ.get("PATH", "")
    status = bpy.context.window_manager.stchain_status
    try:
        outcome = sorted(bpy.ops.stchain.runtime(action="plan"))
    except RuntimeError as e:
        outcome = [f"RuntimeError: {e}"]
    return {"outcome": outcome, "message": status.message}


def case_segment(a: dict) -> dict:
    """Segment Object from tracking markers on a Movie Clip: Preview Masks, then Generate (cached masks)."""
    clip = bpy.data.movieclips.load(a["video"])
    for name, frame, co in a["markers"]:
        track = clip.tracking.tracks.get(name) or clip.tracking.tracks.new(name=name, frame=frame)
        marker = track.markers.find_frame(frame) or track.markers.insert_frame(frame)
        marker.co = co
    props = bpy.context.scene.stchain
    props.source, props.clip, props.mask = "CLIP", clip, "SEGMENT"
    set_range(props, 1, a["last"])
    status = bpy.context.window_manager.stchain_status
    try:
        outcome = sorted(bpy.ops.stchain.preview_masks(weights=a["weights"], device="cpu", allow_random_weights=True))
    except RuntimeError as e:
        outcome = [f"RuntimeError: {e}"]
    _, frames, _, folder = sub("bl.segment.ops").plan(bpy.context)
    preview = {"outcome": outcome, "message": status.message, "folder": str(folder),
               "masks": sorted(p.name for p in folder.iterdir()) if folder.is_dir() else [],
               "shown": "4D Mesh masks" in bpy.data.movieclips}
    return {"preview": preview, "generate": generate(a)}


def case_headless(a: dict) -> dict:
    """The headless entry with --segment on a video: the temp folder is listed before and after."""
    temp = Path(tempfile.gettempdir())
    before = sorted(p.name for p in temp.iterdir())
    rc = sub("bl.headless").main(a["argv"])
    after = sorted(p.name for p in temp.iterdir())
    keys = 0
    if Path(a["out"]).is_file():
        bpy.ops.wm.open_mainfile(filepath=a["out"])
        keys = shape_keys()
    return {"rc": rc, "keys": keys, "temp_new": sorted(set(after) - set(before)),
            "jobs_left": sorted(p.name for p in sub("bl.prefs").user_dir("jobs").iterdir())}


def case_weights(a: dict) -> dict:
    """Check Weights from the preferences, on the given weights root."""
    bpy.context.preferences.addons[MOD].preferences.weights_dir = a["weights"]
    status = bpy.context.window_manager.stchain_status
    try:
        outcome = sorted(bpy.ops.stchain.weights(action="check"))
    except RuntimeError:  # an ERROR report raises here; the message is in the status
        outcome = ["CANCELLED"]
    return {"outcome": outcome, "message": status.message}


def case_imports(a: dict) -> dict:
    """Every module of the installed copy: the Blender side here, the worker side in the worker's own
    interpreter and path (what a job runs with); and where each third-party import resolves there."""
    mod = sys.modules[MOD]
    root = Path(mod.__file__).parent
    names = sorted(".".join(p.relative_to(root).with_suffix("").parts) for p in root.rglob("*.py"))
    names = [n.removesuffix(".__init__").removesuffix("__init__") for n in names]
    blender = [n for n in names if n == "bl" or n.startswith("bl.")]
    failed = {}
    for n in blender:
        try:
            importlib.import_module(f"{MOD}.{n}")
        except Exception as e:  # noqa: BLE001 - every failure is reported, the test names them
            failed[n] = f"{type(e).__name__}: {e}"
    prefs = sub("bl.prefs")
    python = prefs.python(bpy.context)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(prefs.pythonpath(python)))
    import subprocess

    worker = [n for n in names if n not in blender and n != "__main__"]  # __main__ runs the command line
    done = subprocess.run([python, a["audit"], root.name, json.dumps(worker)],
                          env=env, capture_output=True, text=True, timeout=300)
    line = [x for x in done.stdout.splitlines() if x.startswith("AUDIT ")]
    audit = json.loads(line[0][6:]) if line else {"error": done.stderr[-3000:]}
    return {"blender_modules": blender, "blender_failed": failed, "worker_python": python, "worker": audit}


CASES = {"clip": case_clip, "sequence": case_sequence, "rgba": case_rgba, "segment": case_segment,
         "headless": case_headless, "weights": case_weights, "imports": case_imports,
         "runtime_plan": case_runtime_plan}


def main() -> None:
    if sys.argv[1] == "install":
        report = install(sys.argv[2])
    else:
        enable()
        report = CASES[sys.argv[1]](json.loads(sys.argv[2]))
    report["python"] = sys.executable
    print("REPORT " + json.dumps(report), flush=True)


main()
