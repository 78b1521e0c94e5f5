"""The synthetic benchmark: scenes in numpy (``scenes``) rendered by Blender (``render``; bpy, never torch)."""
