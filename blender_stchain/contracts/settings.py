"""Every tunable of the pipeline, named and documented in one place, plus presets.

Modules take their own keyword settings with these defaults; the pipeline passes the values
of a ``Settings`` instance down. Presets trade speed for quality; ``balanced`` is the default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class Settings:
    # --- stage 0 (anchor, TripoSG) ---
    anchor_steps: int = 50  # flow-matching steps for the anchor shape (reference: 50 in --fast, 100 default)
    anchor_guidance: float = 7.5  # classifier-free guidance scale for stage 0
    anchor_seed: int = 44  # RNG seed of the anchor noise (reference value)
    anchor_frame: int | None = None  # window-relative anchor index; None = largest mask area in window 1
    # --- surface extraction ---
    grid_resolution: int = 256  # finest SDF grid cells per axis for the anchor mesh
    coarse_resolution: int = 64  # first, dense level of the coarse-to-fine grid
    candidate_resolution: int = 64  # finest grid of the per-frame candidate surfaces (4.4)
    candidate_coarse_resolution: int = 16  # their dense first level (coarse-to-fine keeps this cheap)
    face_budget: int = 40_000  # anchor mesh decimated to at most this many faces
    min_component_ratio: float = 0.02  # drop pieces with fewer faces than this share of the largest
    # --- stage I (truncated) and capture ---
    chain_steps: int = 4  # K: truncated stage-I steps with attention capture
    stage1_seed: int = 0  # RNG seed of the stage-I noise (per window: seed + window index)
    stage1_guidance: float | None = None  # CFG for the chain's clean-latent predictions; None = the
    # conditional branch only (the captured maps come from it anyway): half the stage-I cost
    capture_layers: tuple[int, ...] = (0, 1, 2, 3, 4, 5)  # denoiser self-attention layers averaged
    window_size: int = 16  # T: frames per window (the denoiser's temporal context)
    # --- chain and blend ---
    top_k: int = 8  # candidates blended per vertex
    tau: float = 0.05  # blend temperature, relative to each row's maximum score
    vertex_chunk: int = 4096  # vertices per chunk of the chain product (memory knob)
    decode_chunk: int = 262_144  # query points per SDF decoder call (memory knob; quartered on an OOM retry)
    attention_chunk: int = 8192  # query points per captured decoder attention map (~heads x tokens x 4 bytes
    # each; memory knob, quartered on an OOM retry)
    # --- dense motion ---
    landmarks: int = 512  # farthest-point landmarks on the anchor
    min_confidence: float = 0.0  # landmarks below this chain confidence are ignored in a frame; the
    # confidence (top-k mass) is small for spread attention, so the default keeps all, confidence-weighted
    smooth_sigma: float = 0.5  # temporal sigma (frames) of the confidence-weighted trajectory smoothing
    skin_sigma: float = 0.02  # geodesic Gaussian width for skinning, relative to the bbox diagonal
    procrustes_neighbours: int = 6  # landmarks in each local rigid fit
    skin_neighbours: int = 8  # landmarks blended per vertex
    # --- camera ---
    camera_focal_px: float | None = None  # fixed focal length in footage pixels; None = solved
    camera_smoothness: float = 0.1  # temporal smoothness weight on the pose
    camera_mode: str = "object_moves"  # or "camera_moves"
    # --- baseline (ActionMesh) ---
    baseline_steps: int = 30  # full stage-I schedule of the reference (15 in its --fast mode)
    baseline_guidance: float = 7.5
    baseline_anchor_steps: int = 100  # the reference's stage-0 steps (50 in its --fast mode)

    def updated(self, **changes) -> "Settings":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    "fast": dict(anchor_steps=25, chain_steps=2, grid_resolution=192, face_budget=20_000, landmarks=256,
                 candidate_resolution=48),
    "balanced": {},
    "quality": dict(anchor_steps=100, chain_steps=8, grid_resolution=384, face_budget=80_000, landmarks=1024),
}


def preset(name: str = "balanced", **overrides) -> Settings:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return Settings().updated(**PRESETS[name]).updated(**overrides)
