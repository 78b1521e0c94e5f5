"""Run in a fresh interpreter with HOME set to a temporary folder (Blender's user config lives there):
install the built zip, enable it from the installed copy, register twice, run the headless entry.

argv: ZIP OUT_BLEND FOOTAGE [WEIGHTS]. Prints one JSON line with what it found. With WEIGHTS, also runs
*Check Weights* from the installed copy: on the empty default folder, then on WEIGHTS (the preference).
"""

import importlib
import json
import sys

import bpy  # noqa: I001 (bpy first: it makes addon_utils importable)
import addon_utils

zip_path, out_blend, footage = sys.argv[1:4]
MOD = "bl_ext.user_default.blender_stchain"
bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
report = {"enabled": MOD in bpy.context.preferences.addons}
mod = importlib.import_module(MOD)
report["module_file"] = mod.__file__
for _ in range(2):
    addon_utils.disable(MOD)
    report.setdefault("after_disable", []).append(hasattr(bpy.types.Scene, "stchain"))
    addon_utils.enable(MOD, default_set=True)
report["registered"] = hasattr(bpy.types.Scene, "stchain") and hasattr(bpy.types, "STCHAIN_OT_generate")
report["prefs_weights"] = importlib.import_module(MOD + ".bl.prefs").weights_dir(bpy.context)
headless = importlib.import_module(MOD + ".bl.headless")
report["rc"] = headless.main(["--footage", footage, "--frames", "1:3", "--out", out_blend])
ob = bpy.data.objects.get("4D Mesh")
report["keys"] = len(ob.data.shape_keys.key_blocks) if ob else 0
report["job"] = json.loads(ob["stchain"]) if ob else None
report["jobs_left"] = [str(p) for p in importlib.import_module(MOD + ".bl.prefs").user_dir("jobs").iterdir()]
if len(sys.argv) > 4:
    status = bpy.context.window_manager.stchain_status
    checks = []
    for folder in ("", sys.argv[4]):
        bpy.context.preferences.addons[MOD].preferences.weights_dir = folder
        try:
            outcome = sorted(bpy.ops.stchain.weights(action="check"))
        except RuntimeError:  # an ERROR report raises here; the message is in the status
            outcome = ["CANCELLED"]
        checks.append({"outcome": outcome, "message": status.message})
    report["weights_checks"] = checks
print("REPORT " + json.dumps(report))
