"""Parity: ActionMesh frame preprocessing (shared crop, square pad, uint8) and the DINOv2 processor."""

import numpy as np

from blender_stchain.engine.footage import preprocess as pp
from tests.engine.parity import assert_exact
from tests.engine.parity.reference import dinov2_pixel_values, is_valid_alpha


def check(case):
    t, info = case.tensors, case.info
    rgba = t["input_rgba_uint8"]
    rgb, alpha = rgba[..., :3], rgba[..., 3]

    assert_exact(is_valid_alpha(alpha), np.array(info["is_valid_alpha_per_frame"]), "is_valid_alpha")
    comp = pp.composite_over_white(rgb, alpha)
    assert_exact(comp.transpose(0, 3, 1, 2), t["composited_float"], "composited_float")

    boxes = pp.frame_bboxes(alpha)
    assert_exact(boxes, t["frame_bboxes_xywh"], "frame_bboxes_xywh")
    box = pp.union_bbox(boxes)
    assert_exact(box, t["union_bbox_xywh"], "union_bbox_xywh")

    x, y, w, h = box
    pad = pp.square_padding(w, h, info["padding_ratio"])
    pads = info["padding"]
    assert pad == (pads["pad_x_each_side"], pads["pad_y_each_side"]), pad
    padded = pp.pad_white(comp[:, y : y + h, x : x + w], *pad)
    assert_exact(padded.transpose(0, 3, 1, 2), t["padded_float"], "padded_float")
    out = pp.to_uint8(padded)
    assert_exact(out, t["output_rgb_uint8"], "output_rgb_uint8")

    assert_exact(dinov2_pixel_values(out[:1]), t["frame0_dinov2_pixel_values"], "frame0_dinov2_pixel_values")

    # the whole recipe in one call (crop-then-composite, chunked) gives the same model input
    prepared = pp.prepare_frames(rgba, padding_ratio=info["padding_ratio"], chunk=4)
    assert_exact(prepared.pixel_values[:1], t["frame0_dinov2_pixel_values"], "prepare_frames pixel_values[0]")
    assert_exact(prepared.model_images, pp.dinov2_crop(t["output_rgb_uint8"]), "prepare_frames model_images")
    assert prepared.crop_map.box_xywh == tuple(int(v) for v in t["union_bbox_xywh"])
