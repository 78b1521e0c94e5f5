"""The GPU runtime buttons of the preferences (plan, install, check, remove): the ``runtime``
command of the command line run in Blender's own Python, driven like a job (progress, Cancel)."""
