"""F-curves that actually animate on Blender 4.2 through 5.x.

4.2/4.3 have legacy actions (``action.fcurves``). 4.4 introduced slotted actions: ``action.fcurves``
still exists there but F-curves made through it on a fresh action land in no assigned slot and do
not animate. 5.0 removed ``action.fcurves``. So: slots/layers/strips/channelbags whenever the action
has ``slots``, legacy otherwise.
"""

from __future__ import annotations

import numpy as np

CONSTANT, LINEAR = 0, 1  # Keyframe.interpolation enum values, for foreach_set


def fcurves_for(id_data, action):
    """Return the F-curve collection of ``action`` that animates ``id_data`` (action assigned)."""
    ad = id_data.animation_data or id_data.animation_data_create()
    if ad.action != action:
        ad.action = action
    if not hasattr(action, "slots"):
        return action.fcurves
    if ad.action_slot is None:
        ad.action_slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(ad.action_slot, ensure=True).fcurves


def write_fcurve(fcurves, data_path, frames, values, *, index=0, interpolation=CONSTANT):
    """One F-curve from arrays, written with foreach_set (no per-key Python calls)."""
    fc = fcurves.new(data_path=data_path, index=index)
    n = len(frames)
    fc.keyframe_points.add(n)
    co = np.empty((n, 2), np.float32)
    co[:, 0] = frames
    co[:, 1] = values
    fc.keyframe_points.foreach_set("co", co.ravel())
    fc.keyframe_points.foreach_set("interpolation", np.full(n, interpolation, np.int32))
    fc.update()
    return fc
