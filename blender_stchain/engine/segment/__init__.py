"""Object masks for ordinary footage: SAM 2.1 video segmentation from a prompt.

``catalogue`` and ``prompts`` are torch-free (Blender imports them); ``model``, ``propagate`` and ``run`` need
torch and ``transformers``; ``evaluate`` is numpy only. Entry points: ``run.segment_footage`` and the worker
``python -m blender_stchain.engine.segment.worker JOB.json``.
"""
