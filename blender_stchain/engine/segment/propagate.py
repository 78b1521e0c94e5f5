"""Masks for a whole clip from prompts on some frames: SAM 2.1 propagation with a bounded memory bank.

``transformers``' session keeps every frame's pixels and every frame's outputs (high-resolution mask
logits included), so memory grows with the clip. Here the session sees one frame's pixels at a time and
outputs are dropped as soon as no later frame can read them: SAM 2.1 reads the memories of the last
``num_maskmem`` frames, the object pointers of the last ``max_object_pointers_in_encoder`` frames, and
every prompted frame. What stays is those, so peak memory is flat in clip length while the numbers are
exactly those of the stock propagation (tested against it).

Order: the prompted frames first, then forward from the earliest prompted frame to the end of the range,
then backward from it to the start (SAM 2.1's own order). Masks stream out frame by frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...contracts.prompts import FramePrompt, PromptError

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
BACKWARD_BLOCK = 8  # frames decoded together when walking backwards (videos seek to keyframes)


@dataclass(frozen=True)
class MaskFrame:
    index: int  # 0-based index in the chosen range
    mask: np.ndarray  # (H, W) bool at footage size
    score: float  # object score logit; <= 0 means SAM 2.1 thinks the object is not in the frame
    prompted: bool


def _session_class():
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    class BoundedSession(Sam2VideoInferenceSession):
        """A session over ``count`` frames that holds the pixels of one frame at a time."""

        def __init__(self, count: int, height: int, width: int, device):
            super().__init__(video_height=height, video_width=width, inference_device=device,
                             inference_state_device=device, video_storage_device=device, dtype=torch.float32)
            self.count = count
            self.processed_frames = {}

        @property
        def num_frames(self) -> int:
            return self.count

    return BoundedSession


def pixel_values(rgb: np.ndarray, size: int, device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, size, size) normalised float32, as SAM 2.1 takes frames (squashed square)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGE_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std)[0]


def _cancel_hooks(model, check: Callable[[], None]) -> list:
    """Check for cancel before every backbone block and memory-attention layer: a cancel lands within
    one block (milliseconds), not one frame (seconds on CPU for the large model)."""
    modules = list(model.vision_encoder.backbone.blocks) + list(model.memory_attention.layers)
    return [m.register_forward_pre_hook(lambda *_: check()) for m in modules]


class Propagator:
    """Runs one object through one clip; see the module docstring."""

    def __init__(self, model, read: Callable[[int], np.ndarray], count: int, footage_size: tuple[int, int],
                 check: Callable[[], None] | None = None):
        self.model = model
        self.read = read
        self.count = count
        self.w, self.h = footage_size
        self.check = check or (lambda: None)
        self.device = next(model.parameters()).device
        self.size = int(model.config.image_size)
        self.keep = max(int(model.config.num_maskmem), int(model.config.max_object_pointers_in_encoder))
        self.session = _session_class()(count, self.h, self.w, self.device)
        self.obj = self.session.obj_id_to_idx(1)
        self.first = 0

    # ---------------------------------------------------------------------------------------- prompts
    def _add_prompt(self, fp: FramePrompt) -> None:
        sx, sy = self.size / self.w, self.size / self.h
        pts = [(x * sx, y * sy) for x, y in fp.points]
        labels = list(fp.labels)
        if fp.box is not None:  # a box is its two corners with labels 2 and 3, before any point
            x0, y0, x1, y1 = fp.box
            pts = [(x0 * sx, y0 * sy), (x1 * sx, y1 * sy)] + pts
            labels = [2, 3] + labels
        self.session.add_point_inputs(self.obj, fp.index, {
            "point_coords": torch.tensor(pts, dtype=torch.float32).view(1, 1, -1, 2),
            "point_labels": torch.tensor(labels, dtype=torch.int32).view(1, 1, -1)})
        self.session.obj_with_new_inputs = [1]

    # ---------------------------------------------------------------------------------------- frames
    def _step(self, index: int, rgb: np.ndarray, reverse: bool, prompted: bool) -> MaskFrame:
        self.check()
        self.session.processed_frames[index] = pixel_values(rgb, self.size, self.device)
        try:
            out = self.model(self.session, frame_idx=index, reverse=reverse)
        finally:
            self.session.processed_frames.pop(index, None)
        self._forget(index)
        logits = F.interpolate(out.pred_masks[:1].float(), size=(self.h, self.w), mode="bilinear",
                               align_corners=False)[0, 0]
        return MaskFrame(index, (logits > 0).cpu().numpy(), float(out.object_score_logits.flatten()[0]), prompted)

    def _forget(self, index: int) -> None:
        """Drop outputs that no frame still to come can read (see the module docstring)."""
        outputs = self.session.output_dict_per_obj[self.obj]["non_cond_frame_outputs"]
        tracked = self.session.frames_tracked_per_obj[self.obj]
        for store in (outputs, tracked):
            for t in [t for t in store if abs(t - index) > self.keep
                      and not self.first <= t <= self.first + self.keep]:
                del store[t]

    def _backward_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        stop = self.first
        while stop > 0:
            start = max(0, stop - BACKWARD_BLOCK)
            block = [self.read(i) for i in range(start, stop)]
            for i in range(stop - 1, start - 1, -1):
                yield i, block[i - start]
            stop = start

    def run(self, frame_prompts: list[FramePrompt]) -> Iterator[MaskFrame]:
        """Yield a ``MaskFrame`` for every frame of the range, prompted frames first."""
        if not frame_prompts:
            raise PromptError("no prompt to start from")
        self.first = min(fp.index for fp in frame_prompts)
        prompted = {fp.index for fp in frame_prompts}
        hooks = _cancel_hooks(self.model, self.check)
        try:
            with torch.inference_mode():
                for fp in sorted(frame_prompts, key=lambda p: p.index):
                    self._add_prompt(fp)
                    result = self._step(fp.index, self.read(fp.index), reverse=False, prompted=True)
                    if not result.mask.any():
                        raise PromptError(
                            f"the mask on prompted frame {fp.frame} is empty: the prompt does not pick an object "
                            "there; put the point inside the object, add points, or use a box")
                    yield result
                for i in range(self.first + 1, self.count):
                    if i in prompted:
                        continue  # its output (from the prompt) is already out and in the memory bank
                    yield self._step(i, self.read(i), reverse=False, prompted=False)
                for i, rgb in self._backward_frames():
                    yield self._step(i, rgb, reverse=True, prompted=False)
        finally:
            for h in hooks:
                h.remove()
