"""The GPU runtime installer: which PyTorch build fits this machine (``plan``), installing it into the
extension's user folder with pinned hashes (``install``), proving it works in a fresh process
(``verify``), and which runtime is active (``store``). Torch-free and bpy-free: Blender and the
command line (``python -m blender_stchain runtime``) share it. See docs/gpu-runtime.md.
"""
