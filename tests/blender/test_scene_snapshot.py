"""The layout of the scene the writer builds, as a reviewed snapshot: objects, their data, collections,
custom properties, modifiers, animation ranges, the camera and the scene settings. Any change to what a
user finds in the .blend is then a visible diff in ``snapshots/``, on every Blender version the suite runs.

To accept a deliberate change: ``STCHAIN_UPDATE_SNAPSHOTS=1 bash scripts/test.sh --quick -k snapshot`` and
review the diff of the JSON file like code.
"""

import difflib
import json
import os
import re
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
pytestmark = pytest.mark.blender

from blender_stchain.bl import scene_writer as sw  # noqa: E402
from tests.blender.synth import result_from_npz  # noqa: E402
from tests.conftest import DATA  # noqa: E402

SNAPSHOTS = Path(__file__).parent / "snapshots"
BEAR = DATA / "videos" / "bear.mp4"


def _fcurves(action):
    """Every F-curve of an action, legacy (4.2/4.3) or slotted (4.4+) alike."""
    if not hasattr(action, "slots"):
        return list(action.fcurves)
    return [fc for layer in action.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves]


def _animation(holder):
    ad = getattr(holder, "animation_data", None)
    if ad is None or ad.action is None:
        return None
    curves = []
    for fc in _fcurves(ad.action):
        keys = [k.co[0] for k in fc.keyframe_points]
        curves.append({"path": fc.data_path, "index": fc.array_index, "keys": len(keys),
                       "frames": [round(min(keys)), round(max(keys))] if keys else None,
                       "interpolation": fc.keyframe_points[0].interpolation if keys else None})
    curves.sort(key=lambda c: (c["path"], c["index"]))
    return {"action": ad.action.name, "curves": _summarised(curves)}


def _summarised(curves):
    """Shape-key curves (one per frame) as a count and their range, so the snapshot stays readable."""
    keys = [c for c in curves if c["path"].startswith("key_blocks[")]
    rest = [c for c in curves if not c["path"].startswith("key_blocks[")]
    if keys:
        rest.append({"path": "key_blocks[*].value", "curves": len(keys), "first": keys[0]["path"],
                     "keys_each": sorted({c["keys"] for c in keys})})
    return rest


def _props(id_block, tmp):
    out = {}
    for k in id_block.keys():
        v = id_block[k]
        v = v if isinstance(v, (str, int, float, bool)) else str(type(v).__name__)
        if isinstance(v, str):  # paths: the test's folder and the cache file's unique suffix vary per run
            v = re.sub(r"_[0-9a-f]{8}(?=\.pc2$)", "_<unique>", v.replace(str(tmp), "<tmp>"))
        out[k] = v
    return out


def _object(ob, tmp):
    d = {"type": ob.type, "data": type(ob.data).__name__ if ob.data else None,
         "collections": sorted(c.name for c in ob.users_collection), "parent": ob.parent.name if ob.parent else None,
         "props": _props(ob, tmp), "modifiers": [[m.type, m.name] for m in ob.modifiers],
         "animation": _animation(ob)}
    if ob.type == "MESH":
        me = ob.data
        sk = me.shape_keys
        d["mesh"] = {"vertices": len(me.vertices), "polygons": len(me.polygons),
                     "materials": [m.name for m in me.materials if m],
                     "shape_keys": None if sk is None else {"count": len(sk.key_blocks), "first": sk.key_blocks[0].name,
                                                            "second": sk.key_blocks[1].name, "last": sk.key_blocks[-1].name,
                                                            "animation": _animation(sk)}}
    if ob.type == "CAMERA":
        cam = ob.data
        d["camera"] = {"lens_unit": cam.lens_unit, "sensor_fit": cam.sensor_fit, "sensor_width": round(cam.sensor_width, 3),
                       "shift": [round(cam.shift_x, 4), round(cam.shift_y, 4)], "show_background": cam.show_background_images,
                       "backgrounds": [[bg.source, bg.clip.name if bg.clip else None] for bg in cam.background_images],
                       "animation": _animation(cam)}
    return d


def describe(scene, tmp) -> dict:
    return {
        "scene": {"frames": [scene.frame_start, scene.frame_end], "fps": scene.render.fps,
                  "fps_base": round(scene.render.fps_base, 5), "camera": scene.camera.name if scene.camera else None,
                  "resolution": [scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage],
                  "collections": sorted(c.name for c in scene.collection.children)},
        "objects": {ob.name: _object(ob, tmp) for ob in sorted(scene.objects, key=lambda o: o.name)},
        "clips": {c.name: {"frame_start": c.frame_start, "tracks": len(c.tracking.tracks),
                           "tracking_sensor": round(c.tracking.camera.sensor_width, 3)} for c in bpy.data.movieclips},
    }


def check_snapshot(name: str, described: dict) -> None:
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(described, indent=1, sort_keys=True) + "\n"
    if os.environ.get("STCHAIN_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text)
        if os.environ.get("STCHAIN_UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"{path} did not exist: written now; review and commit it")
        return
    diff = "".join(difflib.unified_diff(path.read_text().splitlines(True), text.splitlines(True),
                                        str(path), "this run"))
    assert not diff, f"the scene's layout changed (STCHAIN_UPDATE_SNAPSHOTS=1 accepts it):\n{diff}"


@pytest.fixture(scope="module")
def result():
    return result_from_npz(DATA / "animated_glb" / "mushroom.npz", frames=6, first_frame=5, size=(854, 480), tracks=4)


def test_shape_key_scene_layout_matches_its_snapshot(scene, result, tmp_path):
    sw.apply(result, scene, sw.WriteOptions(fps=30.0, footage=str(BEAR), metadata={"method": "chain"}))
    check_snapshot("scene_shape_keys", describe(scene, tmp_path))


def test_point_cache_scene_layout_matches_its_snapshot(scene, result, tmp_path):
    sw.apply(result, scene, sw.WriteOptions(mode="pc2", cache_dir=str(tmp_path), fps=29.97,
                                            metadata={"method": "actionmesh"}))
    check_snapshot("scene_point_cache", describe(scene, tmp_path))


def test_a_changed_layout_is_a_failing_diff(scene, result, tmp_path, monkeypatch):
    sw.apply(result, scene, sw.WriteOptions(fps=30.0, footage=str(BEAR), metadata={"method": "chain"}))
    described = describe(scene, tmp_path)
    described["scene"]["fps"] += 1
    monkeypatch.delenv("STCHAIN_UPDATE_SNAPSHOTS", raising=False)
    with pytest.raises(AssertionError, match=r'-  "fps": 30'):
        check_snapshot("scene_shape_keys", described)
