"""Quality measurement: ActionBench's CD-3D/CD-4D/CD-M, camera errors and TAP-Vid 2D-track metrics.

Metric modules are pure functions over numpy arrays (``chamfer``, ``camera_metrics``, ``tracks``);
``icp`` and the pytorch3d-compatible synchronized sampling use torch, as ActionBench's own code does.
``make_bench`` is the Blender side (PyPI bpy, never torch); ``runner`` the engine side (never bpy).
Nothing is imported here, so ``python -m blender_stchain eval make-bench`` loads no torch.
"""
