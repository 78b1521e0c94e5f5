"""Torch-free contracts shared by Blender (``bl/``) and the runtime (``engine/``): the job, settings,
result file, progress events, errors, the frames folder, safetensors header reading and the one
conversion from OpenCV cameras to Blender's. Only the standard library and numpy (which Blender
ships) are imported here; a fresh-interpreter test proves that importing ``bl`` never loads torch.
"""
