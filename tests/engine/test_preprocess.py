"""Footage preprocessing: Pillow-exact bicubic, shared crop on real frames, and the exact crop map."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from blender_stchain.contracts.errors import FootageError
from blender_stchain.engine.footage import preprocess as pp
from tests.conftest import DATA
from tests.engine.parity.reference import is_valid_alpha

CAMEL = DATA / "rgba_frames" / "davis_camel"
HORSE = DATA / "horsejump_gt"


def _pil_bicubic(image: np.ndarray, size_wh) -> np.ndarray:
    mode = "L" if image.shape[-1] == 1 else "RGB"
    out = Image.fromarray(image.squeeze(-1) if mode == "L" else image, mode).resize(size_wh, Image.BICUBIC)
    return np.asarray(out).reshape(size_wh[1], size_wh[0], -1)


# ---------------------------------------------------------------- bicubic == Pillow


@pytest.mark.parametrize(
    "hw, size_wh",
    [
        ((220, 300), (349, 256)),  # up, both axes
        ((300, 400), (341, 256)),  # down (antialiased kernel)
        ((67, 66), (256, 259)),  # the padded-crop upsampling path
        ((1100, 900), (256, 312)),  # a large downscale
        ((37, 501), (13, 3)),  # extreme, mixed
        ((5, 7), (7, 5)),  # down one axis, up the other
        ((64, 64), (64, 17)),  # one axis unchanged (that pass is skipped)
        ((1, 9), (4, 1)),  # one-pixel rows
        ((80, 40), (39, 70)),  # Pillow 13 runs the vertical pass first here
        ((60, 50), (44, 20)),  # and here
    ],
)
def test_bicubic_equals_pillow(hw, size_wh):
    rng = np.random.default_rng(hash(hw) % 2**32)
    image = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
    got, ref = pp.resize_bicubic(image, size_wh), _pil_bicubic(image, size_wh)
    diff = int((got != ref).sum())
    print(f"bicubic {hw[1]}x{hw[0]} -> {size_wh}: {diff} differing of {ref.size}")
    assert got.shape == ref.shape and diff == 0


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 48), st.integers(1, 48), st.integers(1, 64), st.integers(1, 64),
    st.sampled_from([1, 3]), st.integers(0, 2**32 - 1),
)
def test_bicubic_equals_pillow_random_sizes(h, w, out_h, out_w, channels, seed):
    image = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    np.testing.assert_array_equal(pp.resize_bicubic(image, (out_w, out_h)), _pil_bicubic(image, (out_w, out_h)))


def test_bicubic_batch_equals_per_image_and_pillow_on_real_frames():
    frames = np.stack([np.asarray(Image.open(HORSE / "video" / f"{i:05d}.jpg").convert("RGB")) for i in (0, 25)])
    got = pp.resize_bicubic(frames, (455, 256))
    for g, f in zip(got, frames):
        np.testing.assert_array_equal(g, _pil_bicubic(f, (455, 256)))


# ---------------------------------------------------------------- union box and padding, real frames


def _camel():
    return np.stack([np.asarray(Image.open(p)) for p in sorted(CAMEL.glob("*.png"))])


def _horse(n=8):
    idx = range(0, 50, 50 // n)
    rgb = np.stack([np.asarray(Image.open(HORSE / "video" / f"{i:05d}.jpg").convert("RGB")) for i in idx])
    masks = np.stack([np.asarray(Image.open(HORSE / "masks" / f"{i:05d}.png").convert("L")) for i in idx])
    return rgb, masks


def _check_shared_crop(rgb, alpha):
    """Every foreground pixel of every frame lies in the union box, which touches the foreground on all
    four sides; the padded crop is square to 1 px with the reference margin; pixels outside the box
    and where alpha = 0 are white, opaque pixels keep their colour."""
    box = pp.union_bbox(pp.frame_bboxes(alpha))
    x, y, w, h = (int(v) for v in box)
    fg = (alpha > 0).any(axis=0)
    ys, xs = np.nonzero(fg)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
    pad_x, pad_y = pp.square_padding(w, h)
    m = max(w, h)
    assert min(pad_x, pad_y) == int(0.1 * m)
    crop_a, crop_rgb = alpha[:, y : y + h, x : x + w], rgb[:, y : y + h, x : x + w]
    padded = pp.pad_white(pp.composite_uint8(crop_rgb, crop_a), pad_x, pad_y)
    ph, pw = padded.shape[1:3]
    assert abs(ph - pw) <= 1 and max(ph, pw) == m + 2 * int(0.1 * m)
    inner = padded[:, pad_y : pad_y + h, pad_x : pad_x + w]
    assert (inner[crop_a == 0] == 255).all()
    opaque = crop_a == 255
    assert np.abs(inner[opaque].astype(int) - crop_rgb[opaque]).max() <= 1  # float32 rgb/255*255, truncated
    ring = np.ones(padded.shape[1:3], bool)
    ring[pad_y : pad_y + h, pad_x : pad_x + w] = False
    assert (padded[:, ring] == 255).all()
    print(f"union box {box.tolist()} of {rgb.shape[2]}x{rgb.shape[1]}, pad ({pad_x}, {pad_y}) -> {pw}x{ph}")
    return box


def test_shared_crop_camel_rgba():
    rgba = _camel()
    box = _check_shared_crop(rgba[..., :3], rgba[..., 3])
    prepared = pp.prepare_frames(rgba, chunk=5)
    assert prepared.crop_map.box_xywh == tuple(int(v) for v in box)
    assert prepared.pixel_values.shape == (16, 3, 224, 224) and prepared.pixel_values.dtype.is_floating_point
    # the chunked, crop-first path equals the reference order (composite full frame, crop, pad, convert)
    x, y, w, h = box
    full = pp.composite_over_white(rgba[:3, ..., :3], rgba[:3, ..., 3])
    ref = pp.to_uint8(pp.pad_white(full[:, y : y + h, x : x + w], *prepared.crop_map.pad_xy))
    np.testing.assert_array_equal(prepared.model_images[:3], pp.dinov2_crop(ref))


class _ArrayClip:
    """In-memory frames behind the ``engine.footage.Footage`` reading protocol (float32 masks in [0, 1])."""

    def __init__(self, rgb, masks):
        self.rgb, self.masks = rgb, masks
        self.count, self.size = len(rgb), (rgb.shape[2], rgb.shape[1])

    def read_range(self, a, b):
        return self.rgb[a:b], None if self.masks is None else self.masks[a:b].astype(np.float32) / 255


def test_streamed_clip_crop_and_windows_equal_the_whole_clip():
    rgba = _camel()
    whole = pp.prepare_frames(rgba)
    clip = _ArrayClip(rgba[..., :3], rgba[..., 3])
    cmap = pp.clip_crop_map(clip, chunk=5)
    assert cmap == whole.crop_map
    rgb, masks = clip.read_range(4, 10)  # one window, float masks as the footage reader delivers them
    window = pp.apply_crop(rgb, masks, cmap)
    np.testing.assert_array_equal(window.model_images, whole.model_images[4:10])
    assert torch.equal(window.pixel_values, whole.pixel_values[4:10])
    no_masks = pp.clip_crop_map(_ArrayClip(rgba[..., :3], None))
    assert no_masks.box_xywh == (0, 0, 512, 512)
    with pytest.raises(FootageError, match="crop was made for"):
        pp.apply_crop(rgb[:, :500], masks[:, :500], cmap)


def test_shared_crop_horsejump_masks():
    rgb, masks = _horse()
    box = _check_shared_crop(rgb, masks)
    per_frame = pp.frame_bboxes(masks)
    assert (per_frame[:, 2] < box[2]).any() or (per_frame[:, 3] < box[3]).any()  # the box is a true union
    assert is_valid_alpha(masks).all()


def test_whole_object_stays_inside_the_model_image():
    """The 10% margin exceeds what the 256 -> 224 centre crop removes, so no foreground is ever cut."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        fw, fh = (int(v) for v in rng.integers(64, 4000, 2))
        w, h = int(rng.integers(1, fw + 1)), int(rng.integers(1, fh + 1))
        x, y = int(rng.integers(0, fw - w + 1)), int(rng.integers(0, fh - h + 1))
        cmap = pp.crop_map((fw, fh), (x, y, w, h))
        corners = cmap.to_model(np.array([[x, y], [x + w, y + h]], float))
        assert (corners >= 0).all() and (corners <= 224).all(), (fw, fh, x, y, w, h, corners)


# ---------------------------------------------------------------- crop map


@pytest.mark.parametrize(
    "footage_wh, box",
    [
        ((1920, 1080), (611, 140, 530, 801)),  # landscape, tall object
        ((1080, 1920), (100, 700, 901, 333)),  # portrait, wide object
        ((3840, 2160), (1234, 567, 2001, 1499)),  # 4K
        ((3840, 2160), (0, 0, 3840, 2160)),  # 4K, whole frame
        ((67, 66), (3, 5, 57, 30)),  # tiny, odd padding
    ],
)
def test_crop_map_inverse_is_exact(footage_wh, box):
    cmap = pp.crop_map(footage_wh, box)
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 1, (10000, 2)) * np.array(footage_wh)
    back = cmap.to_footage(cmap.to_model(pts))
    err = float(np.abs(back - pts).max())
    model = rng.uniform(-20, 244, (10000, 2))
    err2 = float(np.abs(cmap.to_model(cmap.to_footage(model)) - model).max())
    print(f"crop map {footage_wh} box {box}: footage->model->footage {err:.2e} px, model->footage->model {err2:.2e} px")
    assert err < 1e-4 and err2 < 1e-4


def _dark_centroid(images: np.ndarray) -> np.ndarray:
    """Per image, the (x, y) centroid of darkness (255 − grey) in the continuous pixel convention."""
    d = 255.0 - images.astype(np.float64).mean(axis=-1)
    h, w = d.shape[-2:]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    total = d.sum(axis=(-2, -1))
    return np.stack([(d * xs).sum(axis=(-2, -1)) / total, (d * ys).sum(axis=(-2, -1)) / total], -1)


@pytest.mark.parametrize("footage_wh", [(640, 360), (360, 640)])
def test_crop_map_forward_matches_the_pixels(footage_wh):
    """A dark blob at a known footage position lands where the CropMap says (independent of its algebra)."""
    fw, fh = footage_wh
    ys, xs = np.mgrid[0:fh, 0:fw] + 0.5
    centres = np.array([[0.3 * fw + 0.37, 0.4 * fh + 0.81], [0.62 * fw + 0.13, 0.55 * fh + 0.29]])
    dark = np.exp(-(((xs - centres[:, None, None, 0]) ** 2 + (ys - centres[:, None, None, 1]) ** 2) / (2 * 6.0**2)))
    rgb = np.repeat(np.round(255 * (1 - dark))[..., None], 3, -1).astype(np.uint8)
    alpha = np.zeros((2, fh, fw), np.uint8)
    alpha[:, int(0.2 * fh) : int(0.7 * fh), int(0.2 * fw) : int(0.8 * fw)] = 255
    prepared = pp.prepare_frames(rgb, alpha)
    got = _dark_centroid(prepared.model_images)
    want = prepared.crop_map.to_model(centres)
    err = float(np.abs(got - want).max())
    print(f"crop map vs rendered blob {footage_wh}: {err:.4f} model px")
    assert err < 0.02


def test_crop_map_matches_real_mask_centroids():
    """Horsejump masks: the footage centroid of each mask maps onto the centroid of its model image."""
    _, masks = _horse()
    black = np.zeros(masks.shape + (3,), np.uint8)
    prepared = pp.prepare_frames(black, masks)  # black object on white: darkness = the mask
    got = _dark_centroid(prepared.model_images)
    want = prepared.crop_map.to_model(_dark_centroid(255 - np.repeat(masks[..., None], 3, -1)))
    err = float(np.abs(got - want).max())
    print(f"horsejump mask centroids, footage -> model: max error {err:.4f} model px")
    assert err < 0.05


# ---------------------------------------------------------------- errors users can hit


def test_errors():
    rgb = np.zeros((2, 20, 30, 3), np.uint8)
    with pytest.raises(FootageError, match="masks are"):
        pp.prepare_frames(rgb, np.zeros((2, 20, 31), np.uint8))
    with pytest.raises(FootageError, match="empty in every frame"):
        pp.prepare_frames(rgb, np.zeros((2, 20, 30), bool))
    with pytest.raises(FootageError, match="uint8"):
        pp.prepare_frames(rgb.astype(np.float32))
    opaque = pp.prepare_frames(rgb)  # no mask: the whole frame is the object
    assert opaque.crop_map.box_xywh == (0, 0, 30, 20)
