"""Surfaces and meshes: SDF grids to watertight meshes (``surface``) and mesh operations
(cleanup, components, decimation: ``mesh_ops``)."""
