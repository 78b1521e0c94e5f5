"""Benchmark folders: ours (``eval make-bench``) and ActionBench's, read into one ``Clip`` type.

Ours, one folder per clip::

    CLIP/rgba/0001.png ...       RGBA frames (the footage); or CLIP/video.mp4 (any video file) plus
                                 CLIP/masks/ (one mask image per frame)
    CLIP/gt.npz                  vertices (T,V,3) float32, faces (F,3) int32, surfaces (T,N,3) float32
                                 (tracked surface points, ActionBench's GT form), K (3,3),
                                 world_to_camera (T,4,4) OpenCV, image_size (W,H), track_ids (L,),
                                 tracks_2d (T,L,2) footage pixels, track_visible (T,L) uint8
    CLIP/clip.json               name, source, camera ("static" | "orbit"), frames, notes

ActionBench (huggingface.co/datasets/facebook/actionbench, read by its ``evaluate_dataset.py``):
``UID/surfaces.npy`` (T, N, 6) tracked points + normals; its 16 RGBA frames are looked for as PNGs in
``UID/`` or one sub-folder of it (the exact folder name of the download is not verified here). It has no
camera and no 2D tracks, so only CD-3D/CD-4D/CD-M are scored on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import EvalError

GT_FILE, ACTIONBENCH_FILE, META_FILE, FRAMES_DIR = "gt.npz", "surfaces.npy", "clip.json", "rgba"


@dataclass
class Clip:
    name: str
    footage: Path  # folder of RGBA frames, or a video file
    surfaces: np.ndarray  # (T, N, 3) tracked GT points (the ActionBench cloud)
    vertices: np.ndarray | None = None  # (T, V, 3) GT mesh, fixed topology
    faces: np.ndarray | None = None
    K: np.ndarray | None = None
    world_to_camera: np.ndarray | None = None  # (T, 4, 4) OpenCV
    image_size: tuple[int, int] | None = None
    track_ids: np.ndarray | None = None  # (L,) GT vertex of each 2D track
    tracks_2d: np.ndarray | None = None  # (T, L, 2)
    track_visible: np.ndarray | None = None  # (T, L) bool
    meta: dict = field(default_factory=dict)
    masks: Path | None = None  # mask folder of video footage

    @property
    def frames(self) -> int:
        return int(self.surfaces.shape[0])

    @property
    def has_camera(self) -> bool:
        return self.K is not None and self.world_to_camera is not None

    @property
    def has_tracks(self) -> bool:
        return self.tracks_2d is not None and self.track_ids is not None


def write_clip(folder, name: str, vertices, faces, surfaces, K, world_to_camera, image_size, track_ids,
               tracks_2d, track_visible, meta: dict) -> Path:
    """The GT files of one of our clips (the frames are written by the renderer)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / GT_FILE, vertices=np.asarray(vertices, np.float32), faces=np.asarray(faces, np.int32),
                        surfaces=np.asarray(surfaces, np.float32), K=np.asarray(K, np.float64),
                        world_to_camera=np.asarray(world_to_camera, np.float64),
                        image_size=np.asarray(image_size, np.int32), track_ids=np.asarray(track_ids, np.int32),
                        tracks_2d=np.asarray(tracks_2d, np.float32),
                        track_visible=np.asarray(track_visible, np.uint8))
    (folder / META_FILE).write_text(json.dumps({"name": name, **meta}, indent=1), encoding="utf-8")
    return folder


def read_bench(root, limit: int | None = None) -> list[Clip]:
    """Every clip under ``root`` (sorted by name), ours or ActionBench's."""
    root = Path(root)
    if not root.is_dir():
        raise EvalError(f"benchmark folder {root} not found; build one with "
                        f"`python -m blender_stchain eval make-bench {root}` or download ActionBench")
    folders = sorted(p for p in root.iterdir() if (p / GT_FILE).exists() or (p / ACTIONBENCH_FILE).exists())
    if not folders:
        raise EvalError(f"{root} holds no clip (no */{GT_FILE} or */{ACTIONBENCH_FILE}); "
                        f"with ActionBench, point at its data/ folder")
    return [read_clip(p) for p in folders[:limit]]


def read_clip(folder) -> Clip:
    folder = Path(folder)
    if (folder / GT_FILE).exists():
        d = np.load(folder / GT_FILE)
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8")) if (folder / META_FILE).exists() else {}
        footage, masks = _footage(folder)
        return Clip(name=folder.name, footage=footage, masks=masks, surfaces=d["surfaces"],
                    vertices=d["vertices"], faces=d["faces"], K=d["K"], world_to_camera=d["world_to_camera"],
                    image_size=tuple(int(v) for v in d["image_size"]), track_ids=d["track_ids"],
                    tracks_2d=d["tracks_2d"], track_visible=d["track_visible"].astype(bool), meta=meta)
    surfaces = np.load(folder / ACTIONBENCH_FILE)
    if surfaces.ndim != 3 or surfaces.shape[-1] < 3:
        raise EvalError(f"{folder / ACTIONBENCH_FILE} has shape {surfaces.shape}, expected (T, N, 6)")
    footage, masks = _footage(folder)
    return Clip(name=folder.name, footage=footage, masks=masks, surfaces=surfaces[..., :3].astype(np.float32),
                meta={"source": "actionbench"})


VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")


def _footage(folder: Path) -> tuple[Path, Path | None]:
    """RGBA PNG frames (``rgba/``, the clip folder or a sub-folder), else a video file plus ``masks/``."""
    for cand in (folder / FRAMES_DIR, folder, *sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "masks")):
        if any(cand.glob("*.png")):
            return cand, None
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if videos:
        return videos[0], folder / "masks" if (folder / "masks").is_dir() else None
    raise EvalError(f"no footage in {folder}: expected PNG frames (rgba/) or a video file with masks/")
