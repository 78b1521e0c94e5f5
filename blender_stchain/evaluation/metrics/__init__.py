"""The metric definitions: ActionBench's Chamfer scores (``actionbench`` over ``sampling``, ``icp``,
``chamfer``), camera errors (``camera``) and TAP-Vid 2D-track metrics (``tracks``). numpy, plus torch
for ActionBench's gradient ICP and pytorch3d-style sampling; never bpy."""
