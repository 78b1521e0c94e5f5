"""Batch runs: many clips over long-lived workers on Ray (``python -m blender_stchain batch``).

Ray is an optional extra (``pip install blender_stchain[batch]``) imported only by ``driver`` and
``cli`` here, never by the engine or the Blender extension. Each worker runs clip after clip through
the same ``engine.pipeline.run`` as every other entry point, with its weights loaded once.

- ``jobs``: JOBS (folder of clips, glob, JSON-lines file) -> validated clip jobs.
- ``identity``: the hash of footage + settings that ``--resume`` compares.
- ``worker``: the clip worker an actor wraps (plain Python, testable without Ray).
- ``driver``: the scheduler (retries, cancel, progress); ``summary``: ``summary.json`` and the log.
"""
