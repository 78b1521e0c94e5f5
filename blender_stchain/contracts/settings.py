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
    offload: str = "auto"  # "models": only the running model on the device (the others wait on the host);
    # "none": every model stays; "auto": offload when free device memory is short of a run's peak
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
    camera_focal_mm: float | None = None  # fixed lens focal length (mm) on a camera_sensor_mm-wide sensor
    camera_sensor_mm: float = 36.0  # sensor width (mm) the footage width spans (36 = full frame)
    camera_focal_source: str = "given"  # who gave camera_focal_px / _mm: "given", or in Blender "clip camera" /
    # "footage metadata" (the job gets exported frames, so Blender reads the footage's lens itself)
    camera_footage_lens: str = "use"  # "use" the 35 mm equivalent in the footage's own metadata when no focal is
    # given, or "ignore" it (cropped or stabilised video: the metadata describes the sensor, not the footage)
    camera_focal_max_width: float = 0.3  # a solved focal whose 95% interval is wider than this share of it
    # is flagged "focal length poorly determined: give the lens" (a warning; the poses are still written)
    camera_smoothness: float = 0.1  # temporal smoothness weight on the pose
    camera_mode: str = "object_moves"  # or "camera_moves"
    # --- baseline (ActionMesh) ---
    baseline_steps: int = 30  # full stage-I schedule of the reference (15 in its --fast mode)
    baseline_guidance: float = 7.5
    baseline_anchor_steps: int = 100  # the reference's stage-0 steps (50 in its --fast mode)

    def updated(self, **changes) -> "Settings":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}; see contracts/settings.py")
        for name, value in changes.items():
            check(name, value)
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


# Allowed values of every setting: (lowest, highest) inclusive (None = open), or the choices. Checked when
# a job is made, before any frame is read, so a bad value is one line at once, not a crash minutes later.
RANGES: dict[str, tuple] = {
    "anchor_steps": (1, 1000), "anchor_guidance": (0, None), "anchor_seed": (0, None), "anchor_frame": (0, None),
    "grid_resolution": (8, 2048), "coarse_resolution": (4, 2048), "candidate_resolution": (8, 2048),
    "candidate_coarse_resolution": (4, 2048), "face_budget": (4, None), "min_component_ratio": (0, 1),
    "chain_steps": (1, 1000), "stage1_seed": (0, None), "stage1_guidance": (0, None), "capture_layers": (0, 255),
    "window_size": (2, 1024), "top_k": (1, 1024), "tau": (1e-6, None), "vertex_chunk": (1, None),
    "decode_chunk": (1, None), "attention_chunk": (1, None), "landmarks": (3, None), "min_confidence": (0, 1),
    "smooth_sigma": (0, None), "skin_sigma": (1e-6, None), "procrustes_neighbours": (1, None),
    "skin_neighbours": (1, None), "camera_focal_px": (1e-3, None), "camera_smoothness": (0, None),
    "camera_focal_mm": (1e-3, None), "camera_sensor_mm": (1e-3, None), "camera_focal_max_width": (0, None),
    "camera_focal_source": ("given", "clip camera", "footage metadata"), "camera_footage_lens": ("use", "ignore"),
    "camera_mode": ("object_moves", "camera_moves"), "baseline_steps": (1, 1000), "baseline_guidance": (0, None),
    "baseline_anchor_steps": (1, 1000), "offload": ("auto", "none", "models"),
}
_KINDS = {"int": "a whole number", "float": "a number", "str": "a word"}


def _kind(name: str) -> tuple[str, bool, bool]:
    """(element type name, None allowed, is a tuple) from the field's annotation."""
    text = str(next(f.type for f in fields(Settings) if f.name == name))
    many = text.startswith("tuple[")
    element = text[len("tuple["):].split(",")[0] if many else text.split("|")[0]
    return element.strip(" ]"), "None" in text, many


def check(name: str, value) -> None:
    """Raise ValueError (one line naming the setting and its allowed values) unless ``value`` fits."""
    if name not in RANGES:
        raise ValueError(f"unknown setting {name!r}; see contracts/settings.py")
    kind, nullable, many = _kind(name)
    if value is None:
        if nullable:
            return
        raise ValueError(f"setting {name} cannot be empty")
    items = value if many and isinstance(value, (list, tuple)) else [value]
    if many and not isinstance(value, (list, tuple)):
        plural = _KINDS[kind].split(" ", 1)[1] + "s"
        raise ValueError(f"setting {name} must be a list of {plural}, e.g. [0,1,2], got {value!r}")
    for v in items:
        _check_one(name, kind, v)


def _check_one(name: str, kind: str, v) -> None:
    limits = RANGES[name]
    if kind == "str":
        if v not in limits:
            raise ValueError(f"setting {name} must be one of {', '.join(limits)}, got {v!r}")
        return
    ok = not isinstance(v, bool) and (isinstance(v, int) if kind == "int" else isinstance(v, (int, float)))
    if not ok or v != v:
        raise ValueError(f"setting {name} must be {_KINDS[kind]}, got {v!r}")
    lo, hi = limits
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        span = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise ValueError(f"setting {name} must be {span}, got {v!r}")
