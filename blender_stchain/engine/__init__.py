"""bpy-free runtime: models, sampling, the attention chain, dense motion and the camera.

Never import bpy (or mathutils) anywhere below this package; a test checks it in a fresh
interpreter. torch is imported lazily by the modules that need it, so lightweight parts
(job specs, results, settings) load without it.
"""
