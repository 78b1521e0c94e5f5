""""Segment Object" in Blender: prompts from tracking markers or a Mask (``markers``), segmentation
jobs for the worker (``jobs``) and the Preview Masks operator (``ops``). No torch here."""
