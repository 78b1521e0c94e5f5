"""blender_stchain: video -> animated fixed-topology mesh + matching camera.

The package doubles as the Blender extension. Nothing here imports bpy at module level, so
``import blender_stchain.engine`` works in a plain interpreter and in the worker process.
"""

__version__ = "0.1.0"


def register():
    from .bl import registration

    registration.register()


def unregister():
    from .bl import registration

    registration.unregister()
