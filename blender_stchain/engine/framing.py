"""The clip-wide crop: one box for every frame of a clip, applied window by window.

The reference crops all frames to the union of their object boxes (so the object's motion inside
the frame survives the crop); for long clips that union is computed in one streaming pass over the
masks, then each window is cropped with the same ``CropMap``, which also takes model-image points
back to footage pixels for the camera.
"""

from __future__ import annotations

import numpy as np

from .preprocess import (
    CropMap, PreparedFrames, ProcessorConfig, alpha_from_mask, composite_over_white, crop_map, dinov2_crop,
    frame_bboxes, normalise, pad_white, to_uint8, union_bbox,
)


def clip_crop_map(clip, cfg: ProcessorConfig = ProcessorConfig()) -> CropMap:
    """Union of the per-frame object boxes (whole frame when the clip has no per-frame masks)."""
    W, H = clip.size
    if clip.mask_kind in ("folder", "alpha"):
        boxes = np.concatenate([frame_bboxes(alpha_from_mask(clip.read(i)[1])[None]) for i in range(clip.count)])
        box = union_bbox(boxes)
    elif clip.mask_kind == "first_frame" and clip.anchor_mask is not None:
        box = union_bbox(frame_bboxes(alpha_from_mask(clip.anchor_mask)[None]))
    else:
        box = np.array([0, 0, W, H])
    return crop_map((W, H), box, cfg=cfg)


def apply_crop(rgb: np.ndarray, masks: np.ndarray | None, cmap: CropMap, cfg: ProcessorConfig = ProcessorConfig(),
               chunk: int = 16) -> PreparedFrames:
    """Composite over white, crop to the shared box, pad square, DINOv2-resize/crop/normalise."""
    alpha = np.full(rgb.shape[:3], 255, np.uint8) if masks is None else alpha_from_mask(masks)
    x, y, w, h = cmap.box_xywh
    crops = []
    for s in range(0, len(rgb), chunk):
        sl = (slice(s, s + chunk), slice(y, y + h), slice(x, x + w))
        padded = pad_white(composite_over_white(rgb[sl][..., :3], alpha[sl]), *cmap.pad_xy)
        crops.append(dinov2_crop(to_uint8(padded), cfg))
    model_images = np.concatenate(crops)
    return PreparedFrames(normalise(model_images, cfg), model_images, cmap)
