import pytest


@pytest.fixture
def scene():
    """A fresh, empty scene in the PyPI bpy module."""
    bpy = pytest.importorskip("bpy", reason="needs the PyPI bpy module (scripts/setup.sh)")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


@pytest.fixture
def registered(scene):
    """The package registered the way tests and ``python -m blender_stchain`` do (no addon_utils)."""
    import blender_stchain

    blender_stchain.register()
    yield scene
    blender_stchain.unregister()


def data_snapshot():
    """Names of every ID in bpy.data, to prove a failed job changed nothing."""
    import bpy

    kinds = ("objects", "meshes", "cameras", "actions", "movieclips", "collections", "images", "scenes",
             "shape_keys", "node_groups", "masks")
    return {k: sorted(i.name for i in getattr(bpy.data, k)) for k in kinds}
