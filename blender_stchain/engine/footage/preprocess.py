"""Footage -> DINOv2 input, exactly as the reference prepares frames, plus the map back to footage.

Reference recipe (ActionMesh ``ImagePreprocessor`` with a shared crop, then DINOv2's
``BitImageProcessor``; fixtures README §2.1 and §2.9), all bit-exact:

1. composite RGB over white with the alpha (or mask), float32;
2. one union bounding box of ``alpha > 0`` over all frames, every frame cropped to it;
3. pad to a square with a margin (``padding_ratio``), white; convert to uint8 by truncation;
4. resize the short side to 256 with Pillow's uint8 bicubic (reimplemented here, no Pillow);
5. centre crop 224x224, rescale by 1/255, normalise with the ImageNet mean/std.

Coordinate convention (``CropMap``): continuous pixel coordinates in which pixel (i, j) covers
[i, i+1) x [j, j+1), so its centre is (i + 0.5, j + 0.5) and an image of W x H pixels spans
[0, W] x [0, H]. This is the convention in which Pillow's resize is an exact scaling, DINOv2 patch
p covers [14p, 14p + 14), and a principal point "at the image centre" is (W/2, H/2). Callers that
use integer pixel centres (OpenCV style) add 0.5 before mapping and subtract it after.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...contracts.errors import FootageError

PADDING_RATIO = 0.1  # ActionMesh ImagePreprocessor default margin around the union box


@dataclass(frozen=True)
class ProcessorConfig:
    """The DINOv2 image processor settings that matter (facebook/dinov2 ``preprocessor_config.json``)."""

    shortest_edge: int = 256
    crop_hw: tuple[int, int] = (224, 224)
    rescale_factor: float = 1 / 255
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- compositing and crop box


def alpha_from_mask(mask: np.ndarray) -> np.ndarray:
    """A mask (bool, uint8 0..255, or float 0..1) as uint8 alpha."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask.astype(np.uint8) * np.uint8(255)
    if mask.dtype == np.uint8:
        return mask
    if np.issubdtype(mask.dtype, np.floating):
        return np.round(np.clip(mask, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise FootageError(f"masks must be bool, uint8 or float images, got {mask.dtype}")


def composite_over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """rgb (..., H, W, 3) uint8, alpha (..., H, W) uint8 -> float32 (..., H, W, 3) in [0, 1].

    float32 op order of the reference: ``rgb/255·a + (1 − a)`` with ``a = alpha·(1/255)``."""
    inv255 = np.float32(1 / 255)
    a = alpha.astype(np.float32)[..., None] * inv255
    return rgb.astype(np.float32) * inv255 * a + (np.float32(1) - a)


def frame_bboxes(alpha: np.ndarray) -> np.ndarray:
    """(T, H, W) alpha -> (T, 4) int64 boxes (x, y, w, h) of ``alpha > 0``; all-zero rows for empty frames."""
    fg = alpha > 0
    rows, cols = fg.any(axis=2), fg.any(axis=1)
    boxes = np.zeros((len(alpha), 4), np.int64)
    for i, (r, c) in enumerate(zip(rows, cols)):
        if r.any():
            y0, y1 = np.flatnonzero(r)[[0, -1]]
            x0, x1 = np.flatnonzero(c)[[0, -1]]
            boxes[i] = (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
    return boxes


def union_bbox(boxes: np.ndarray) -> np.ndarray:
    """Smallest (x, y, w, h) containing every non-empty box; the shared crop of all frames."""
    boxes = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
    if not len(boxes):
        raise FootageError("the masks are empty in every frame: nothing to reconstruct (check the mask/alpha input)")
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    return np.array([x0, y0, x1 - x0, y1 - y0], np.int64)


def square_padding(w: int, h: int, padding_ratio: float = PADDING_RATIO) -> tuple[int, int]:
    """(pad_x, pad_y) added on both sides: a margin of int(ratio·max) plus centring to a square.
    When max − w (or max − h) is odd the result is one pixel short of square, as in the reference."""
    m = max(w, h)
    base = int(m * padding_ratio)
    return base + (m - w) // 2, base + (m - h) // 2


def pad_white(images: np.ndarray, pad_x: int, pad_y: int) -> np.ndarray:
    """(..., H, W, 3) -> (..., H + 2 pad_y, W + 2 pad_x, 3), padded white (1.0, or 255 for uint8)."""
    width = [(0, 0)] * (images.ndim - 3) + [(pad_y, pad_y), (pad_x, pad_x), (0, 0)]
    return np.pad(images, width, constant_values=255 if images.dtype == np.uint8 else 1.0)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 by truncation of x·255 (the reference does not round)."""
    return (images * np.float32(255)).astype(np.uint8)


def _composite_lut() -> np.ndarray:
    """to_uint8(composite_over_white) for every (alpha, value) pair: (65536,) uint8 indexed by
    alpha·256 + value. Per-pixel identical to the float path, and far cheaper on long clips."""
    value, alpha = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))
    return to_uint8(composite_over_white(value[..., None], alpha)).reshape(-1)


_COMPOSITE_LUT = _composite_lut()


def composite_uint8(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``to_uint8(composite_over_white(rgb, alpha))`` through a lookup table."""
    index = (alpha.astype(np.uint16) << 8)[..., None] | rgb
    return _COMPOSITE_LUT[index]


# ---------------------------------------------------------------- Pillow-compatible bicubic

_PRECISION_BITS = 22  # Pillow's fixed-point precision for 8-bit resampling


def _keys_cubic(s: np.ndarray) -> np.ndarray:
    """Keys cubic with a = −0.5 (Pillow's BICUBIC), same float64 op order as Pillow."""
    a = -0.5
    s = np.abs(s)
    near = ((a + 2.0) * s - (a + 3.0)) * s * s + 1
    far = (((s - 5) * s + 8) * s - 4) * a
    return np.where(s < 1.0, near, np.where(s < 2.0, far, 0.0))


def _resample_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output index: input indices (n_out, K) and int32 fixed-point weights (n_out, K); unused
    taps carry weight 0. Mirrors Pillow's coefficient computation so the rounding is identical."""
    scale = n_in / n_out
    fscale = max(scale, 1.0)  # widen the kernel when downsampling (antialiasing)
    support = 2.0 * fscale
    centre = (np.arange(n_out) + 0.5) * scale
    lo = np.maximum(np.trunc(centre - support + 0.5), 0).astype(np.int64)
    hi = np.minimum(np.trunc(centre + support + 0.5), n_in).astype(np.int64)
    taps = int((hi - lo).max())
    idx = lo[:, None] + np.arange(taps)[None, :]
    used = idx < hi[:, None]
    w = np.where(used, _keys_cubic((idx - centre[:, None] + 0.5) * (1.0 / fscale)), 0.0)
    total = np.zeros(n_out)
    for j in range(taps):  # sequential sum, as Pillow (pairwise summation could change the last bit)
        total += w[:, j]
    w = w / np.where(total != 0.0, total, 1.0)[:, None]
    fixed = np.trunc(np.where(w < 0, w * (1 << _PRECISION_BITS) - 0.5, w * (1 << _PRECISION_BITS) + 0.5))
    return np.minimum(idx, n_in - 1), fixed.astype(np.int32)


def _band_blocks(n_in: int, n_out: int, block: int = 32):
    """The fixed-point weights as dense (outputs, inputs) blocks over the input band each output block
    reads, pre-scaled by 2^-22 (exact: a power of two), with the band's input range."""
    idx, k = _resample_taps(n_in, n_out)
    blocks = []
    for o0 in range(0, n_out, block):
        o1 = min(o0 + block, n_out)
        lo, hi = int(idx[o0:o1, 0].min()), int(idx[o0:o1].max()) + 1
        dense = np.zeros((o1 - o0, hi - lo))
        rows = np.repeat(np.arange(o1 - o0)[:, None], idx.shape[1], axis=1)
        np.add.at(dense, (rows, idx[o0:o1] - lo), k[o0:o1])  # unused taps add weight 0
        blocks.append((o0, o1, lo, hi, dense * 2.0**-_PRECISION_BITS))
    return blocks


def _resample_plane(plane: np.ndarray, blocks, n_out: int) -> np.ndarray:
    """One separable pass along axis 0 of a uint8 plane (n_in, ...) -> (n_out, ...) uint8.

    Exact: each weight is an integer times 2^-22 and each product and partial sum an integer times
    2^-22 below 2^31·2^-22, which float64 holds without rounding in any summation order. Adding 0.5
    and truncating after the clip is Pillow's ``(Σ + 2^21) >> 22`` clamped to 0..255."""
    xf = np.asarray(plane, dtype=np.float64, order="C").reshape(plane.shape[0], -1)
    out = np.empty((n_out, xf.shape[1]), np.uint8)
    for o0, o1, lo, hi, weights in blocks:
        acc = weights @ xf[lo:hi]
        acc += 0.5
        np.clip(acc, 0.0, 255.0, out=acc)
        out[o0:o1] = acc
    return out.reshape((n_out,) + plane.shape[1:])


def _resample_axis(images: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Resample (..., H, W, C) along H (axis −3) or W (axis −2), one image at a time (bounded memory)."""
    axis = axis - images.ndim  # −3 or −2 within each (H, W, C) image
    blocks = _band_blocks(images.shape[axis], n_out)
    batch = images.reshape((-1,) + images.shape[-3:])
    out_shape = list(batch.shape)
    out_shape[axis] = n_out
    out = np.empty(out_shape, np.uint8)
    for i, image in enumerate(batch):
        out[i] = np.moveaxis(_resample_plane(np.moveaxis(image, axis, 0), blocks, n_out), 0, axis)
    return out.reshape(images.shape[:-3] + tuple(out_shape[1:]))


def resize_bicubic(images: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Pillow ``Image.resize(size, BICUBIC)`` (reducing_gap=None) on uint8 images (..., H, W, C), bit-exact.

    Two separable passes, each rounded to uint8, a pass skipped when its size is unchanged. The pass
    order matters for the rounding: Pillow 13 (which made the fixtures) runs the vertical pass first
    when the height shrinks by more than twice the width's shrinkage in pixels, otherwise horizontal
    first (older Pillow: always horizontal first). The rule was inferred from Pillow 13.0.0 and is
    checked against it on random sizes; the near-square DINOv2 resizes never take the vertical-first
    branch."""
    out_w, out_h = size_wh
    if images.dtype != np.uint8 or images.ndim < 3:
        raise TypeError("resize_bicubic expects uint8 images shaped (..., H, W, C)")
    h, w = images.shape[-3:-1]
    passes = [(images.ndim - 2, out_w, w), (images.ndim - 3, out_h, h)]
    if out_h < h and h - out_h > 2 * (w - out_w):
        passes.reverse()
    for axis, n_out, n_in in passes:
        if n_out != n_in:
            images = _resample_axis(images, axis, n_out)
    return images


# ---------------------------------------------------------------- DINOv2 processor


def resized_size(w: int, h: int, shortest_edge: int) -> tuple[int, int]:
    """(new_w, new_h): short side = shortest_edge, long side = int(shortest_edge·long/short) (floor)."""
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(shortest_edge * long / short)
    return (shortest_edge, new_long) if w <= h else (new_long, shortest_edge)


def centre_crop_offset(w: int, h: int, crop_hw: tuple[int, int]) -> tuple[int, int]:
    """(left, top) of the centre crop."""
    ch, cw = crop_hw
    if w < cw or h < ch:
        raise FootageError(f"image {w}x{h} is smaller than the {cw}x{ch} model input")
    return (w - cw) // 2, (h - ch) // 2


def normalise(images: np.ndarray, cfg: ProcessorConfig = ProcessorConfig()) -> torch.Tensor:
    """uint8 (T, h, w, 3) -> float32 (T, 3, h, w): float32(float64(u8)·rescale), then (x − mean)/std in float32."""
    x = (images.astype(np.float64) * cfg.rescale_factor).astype(np.float32)
    x = (x - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def dinov2_crop(images: np.ndarray, cfg: ProcessorConfig = ProcessorConfig()) -> np.ndarray:
    """uint8 (T, H, W, 3) of one size -> the resized, centre-cropped uint8 model images (T, ch, cw, 3)."""
    h, w = images.shape[-3:-1]
    new_w, new_h = resized_size(w, h, cfg.shortest_edge)
    left, top = centre_crop_offset(new_w, new_h, cfg.crop_hw)
    resized = resize_bicubic(images, (new_w, new_h))
    return resized[..., top : top + cfg.crop_hw[0], left : left + cfg.crop_hw[1], :]


# ---------------------------------------------------------------- the crop map


@dataclass(frozen=True)
class CropMap:
    """Footage pixels <-> model-image (DINOv2 input) pixels, in the module's continuous convention.

    The chain is crop to ``box`` -> pad by ``pad`` -> resize ``padded_wh`` to ``resized_wh`` ->
    centre crop at ``crop_offset``; per axis it is the affine map ``model = (x − x0 + pad)·s − offset``
    with ``s = resized/padded``. Points outside the model image map too (affine, unclipped)."""

    footage_wh: tuple[int, int]
    box_xywh: tuple[int, int, int, int]
    pad_xy: tuple[int, int]
    resized_wh: tuple[int, int]
    crop_offset_xy: tuple[int, int]
    model_wh: tuple[int, int]

    @property
    def padded_wh(self) -> tuple[int, int]:
        return self.box_xywh[2] + 2 * self.pad_xy[0], self.box_xywh[3] + 2 * self.pad_xy[1]

    @property
    def scale(self) -> np.ndarray:
        """Model pixels per footage pixel, (sx, sy): equal up to the 1-px rounding of the sizes."""
        return np.asarray(self.resized_wh, np.float64) / np.asarray(self.padded_wh, np.float64)

    @property
    def _shift(self) -> np.ndarray:
        """Footage origin of the padded image: box corner minus pad."""
        return np.asarray(self.box_xywh[:2], np.float64) - np.asarray(self.pad_xy, np.float64)

    def to_model(self, xy: np.ndarray) -> np.ndarray:
        """Footage (..., 2) x/y -> model-image (..., 2), float64."""
        return (np.asarray(xy, np.float64) - self._shift) * self.scale - np.asarray(self.crop_offset_xy, np.float64)

    def to_footage(self, xy: np.ndarray) -> np.ndarray:
        """Model-image (..., 2) x/y -> footage (..., 2), float64; the exact inverse of ``to_model``."""
        offset = np.asarray(self.crop_offset_xy, np.float64)
        return (np.asarray(xy, np.float64) + offset) / self.scale + self._shift


def crop_map(
    footage_wh: tuple[int, int],
    box_xywh,
    padding_ratio: float = PADDING_RATIO,
    cfg: ProcessorConfig = ProcessorConfig(),
) -> CropMap:
    """The CropMap of the recipe for a given footage size and shared box."""
    box = tuple(int(v) for v in box_xywh)
    pad = square_padding(box[2], box[3], padding_ratio)
    resized = resized_size(box[2] + 2 * pad[0], box[3] + 2 * pad[1], cfg.shortest_edge)
    return CropMap(
        footage_wh=tuple(int(v) for v in footage_wh),
        box_xywh=box,
        pad_xy=pad,
        resized_wh=resized,
        crop_offset_xy=centre_crop_offset(*resized, cfg.crop_hw),
        model_wh=(cfg.crop_hw[1], cfg.crop_hw[0]),
    )


# ---------------------------------------------------------------- the whole recipe


@dataclass(frozen=True)
class PreparedFrames:
    pixel_values: torch.Tensor  # (T, 3, 224, 224) float32, DINOv2 input
    model_images: np.ndarray  # (T, 224, 224, 3) uint8, what the model sees (for display/debug)
    crop_map: CropMap


def _frames_and_alpha(rgb, alpha) -> tuple[np.ndarray, np.ndarray]:
    """Validate frames and masks; RGBA frames carry their alpha, no mask at all means fully opaque."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[-1] not in (3, 4) or rgb.dtype != np.uint8 or not len(rgb):
        raise FootageError(f"frames must be a non-empty (T, H, W, 3|4) uint8 array, got {rgb.dtype} {rgb.shape}")
    if alpha is None:
        alpha = rgb[..., 3] if rgb.shape[-1] == 4 else np.full(rgb.shape[:3], 255, np.uint8)
    alpha = alpha_from_mask(alpha)
    if alpha.shape != rgb.shape[:3]:
        raise FootageError(f"masks are {alpha.shape[1:]} (H, W) x {len(alpha)}, frames {rgb.shape[1:3]} x {len(rgb)}")
    return rgb[..., :3], alpha


def apply_crop(
    rgb: np.ndarray, alpha: np.ndarray | None, cmap: CropMap, cfg: ProcessorConfig = ProcessorConfig(), chunk: int = 16
) -> PreparedFrames:
    """Frames -> DINOv2 input through a known shared crop (any frames of the clip, e.g. one window).

    rgb (T, H, W, 3|4) uint8; alpha (T, H, W) uint8/bool/float mask or None (RGBA alpha, else opaque).
    Frames go ``chunk`` at a time so memory stays bounded; cropping before compositing, and padding
    with 255 after the uint8 conversion, gives the same pixels as the reference's
    composite-crop-pad-convert order."""
    rgb, alpha = _frames_and_alpha(rgb, alpha)
    if (rgb.shape[2], rgb.shape[1]) != cmap.footage_wh:
        raise FootageError(f"frames are {rgb.shape[2]}x{rgb.shape[1]}, the crop was made for {cmap.footage_wh}")
    if resized_size(*cmap.padded_wh, cfg.shortest_edge) != cmap.resized_wh:
        raise ValueError("apply_crop: the crop map was made with another processor config")
    x, y, w, h = cmap.box_xywh
    crops = []
    for s in range(0, len(rgb), chunk):
        sl = (slice(s, s + chunk), slice(y, y + h), slice(x, x + w))
        crops.append(dinov2_crop(pad_white(composite_uint8(rgb[sl], alpha[sl]), *cmap.pad_xy), cfg))
    model_images = np.concatenate(crops)
    return PreparedFrames(normalise(model_images, cfg), model_images, cmap)


def prepare_frames(
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    padding_ratio: float = PADDING_RATIO,
    cfg: ProcessorConfig = ProcessorConfig(),
    chunk: int = 16,
) -> PreparedFrames:
    """In-memory frames -> DINOv2 input with their shared crop, plus the CropMap back to footage pixels
    (arguments as ``apply_crop``). Without any mask the crop is the whole frame."""
    rgb, alpha = _frames_and_alpha(rgb, alpha)
    cmap = crop_map((rgb.shape[2], rgb.shape[1]), union_bbox(frame_bboxes(alpha)), padding_ratio, cfg)
    return apply_crop(rgb, alpha, cmap, cfg, chunk)


def clip_crop_map(
    clip, padding_ratio: float = PADDING_RATIO, cfg: ProcessorConfig = ProcessorConfig(), chunk: int = 16
) -> CropMap:
    """The shared crop of a whole clip, streamed ``chunk`` frames at a time so long clips never sit in
    memory. ``clip`` needs ``count``, ``size`` (W, H) and ``read_range(a, b) -> (rgb, masks | None)``
    (``engine.footage.Footage``); a clip without masks is cropped to the whole frame."""
    boxes = []
    for a in range(0, clip.count, chunk):
        _, masks = clip.read_range(a, min(a + chunk, clip.count))
        if masks is None:
            return crop_map(clip.size, (0, 0, *clip.size), padding_ratio, cfg)
        boxes.append(frame_bboxes(alpha_from_mask(masks)))
    if not boxes:
        raise FootageError("the clip has no frames")
    return crop_map(clip.size, union_bbox(np.concatenate(boxes)), padding_ratio, cfg)
