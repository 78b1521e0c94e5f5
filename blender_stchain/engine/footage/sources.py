"""Frame sources: a folder of images, a frames folder written by Blender, a video file (PyAV).
Each gives frame numbers, size, fps and ``read(k) -> (rgb uint8 HxWx3, alpha float32 HxW | None)``."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np

from ...contracts.errors import FootageError
from ...contracts.frames import FRAMES_FORMAT, FRAMES_VERSION
from .common import IMAGE_SUFFIXES, frames_text, import_av, short_error, size_text
from .pixels import decode_rgb, image_files, image_header

# --------------------------------------------------------------------------------------------
# frame sources: numbers, size, fps, and read(k) -> (rgb uint8 HxWx3, alpha float32 HxW | None)


class Source:
    kind: str
    numbers: list[int]
    size: tuple[int, int]
    fps: Fraction | None = None
    timestamps: list[float] | None = None
    has_alpha: bool = False
    rotation: int = 0  # counter-clockwise degrees applied to make frames upright (videos)
    names: list[str] | None = None  # file stems, to pair mask files by name
    clip_frames: int | None = None  # frames in the whole clip when this source holds a range of it

    def read(self, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def open_source(path: Path) -> Source:
    if path.is_dir():
        if (path / "meta.json").exists() or (path / "frames").is_dir():
            return _FramesFolder(path)
        return _ImageFiles(path, image_files(path, "footage"))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _ImageFiles(path, [path])
    if path.stat().st_size == 0:
        raise FootageError(f"footage file is empty (0 bytes): {path}")
    return _VideoFile(path)


class _ImageFiles(Source):
    kind = "images"

    def __init__(self, root: Path, files: list[Path]):
        self.files = files
        self.numbers = list(range(1, len(files) + 1))
        self.names = [f.stem for f in files]
        headers = [image_header(f, n, "frame") for n, f in zip(self.numbers, files)]
        self.size = headers[0][0]
        self.has_alpha = headers[0][1]
        odd = [n for n, (size, _) in zip(self.numbers, headers) if size != self.size]
        if odd:
            w, h = headers[odd[0] - 1][0]
            raise FootageError(
                f"frames differ in size in {root}: {frames_text(odd)} (e.g. {files[odd[0] - 1].name}, "
                f"{w}x{h}) differ from frame 1 ({size_text(self.size)}); all frames must have one size"
            )

    def read(self, k):
        return decode_rgb(self.files[k], self.numbers[k])


class _FramesFolder(Source):
    kind = "frames"

    def __init__(self, root: Path):
        meta_path = root / "meta.json"
        if not meta_path.exists():
            raise FootageError(f"frames folder {root} has no meta.json (incomplete write); export the frames again")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            numbers = [int(n) for n in meta["frame_numbers"]]
            fps = meta.get("fps")
            self.fps = None if fps is None else Fraction(int(fps[0]), int(fps[1]))
            ok = meta.get("format") == FRAMES_FORMAT and meta.get("version") == FRAMES_VERSION
            self.clip_frames = int(meta["clip_frames"]) if meta.get("clip_frames") is not None else None
            names = meta.get("names")
            self.names = None if names is None else [str(n) for n in names]
            ok = ok and (self.names is None or len(self.names) == len(numbers))
        except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError):
            ok = False
        if not ok:
            raise FootageError(f"{meta_path} is not a {FRAMES_FORMAT} v{FRAMES_VERSION} file; export the frames again")
        if not numbers:
            raise FootageError(f"footage has no frames: {meta_path} lists none")
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))) or numbers[0] < 1:
            raise FootageError(f"{meta_path}: frame_numbers must be consecutive and start at 1 or later")
        self.numbers = numbers
        self.files = [root / "frames" / f"{n:06d}.npy" for n in numbers]
        shapes = [self._header(f, n).shape for f, n in zip(self.files, numbers)]
        self.size = (shapes[0][1], shapes[0][0])
        self.has_alpha = shapes[0][2] == 4
        odd = [n for n, s in zip(numbers, shapes) if s[:2] != shapes[0][:2]]
        if odd:
            raise FootageError(
                f"frames differ in size in {root}: {frames_text(odd)} differ from frame {numbers[0]} "
                f"({size_text(self.size)}); all frames must have one size"
            )

    @staticmethod
    def _header(file: Path, n: int) -> np.ndarray:
        if not file.exists():
            raise FootageError(f"frame {n} is missing: {file}")
        try:
            arr = np.load(file, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise FootageError(f"cannot read frame {n} ({file}): truncated or not a .npy array ({e})") from None
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4) or 0 in arr.shape:
            raise FootageError(f"frame {n} ({file}) must be (H, W, 3|4) uint8, found {arr.shape} {arr.dtype}")
        return arr

    def read(self, k):
        arr = np.array(self._header(self.files[k], self.numbers[k]))
        alpha = arr[..., 3].astype(np.float32) / 255.0 if arr.shape[2] == 4 else None
        return arr[..., :3], alpha


class _VideoFile(Source):
    """A video decoded with PyAV. Probing decodes every packet once (no pixel conversion) because
    containers misreport counts (edit lists, variable rates); reads then stream forward, seeking
    back to a keyframe only when asked for an earlier frame. Frames are turned upright by the
    container's display rotation (phone clips), as players show them; mirror flags are ignored."""

    kind = "video"

    def __init__(self, path: Path):
        self.path = path
        self._container = None
        self._decoder = None
        self._next = 0  # clip index the open decoder yields next
        container, stream = self._open()
        try:
            pts = self._probe(container, stream)
            rate = stream.average_rate or stream.guessed_rate
            w, h = stream.codec_context.width, stream.codec_context.height
            base = stream.time_base  # PyAV >= 18.1.1 refuses stream reads once the container is closed
        finally:
            container.close()
        if not pts:
            raise FootageError(f"footage has no frames: no video frame decodes from {path}")
        self.pts = pts
        self._pos = {p: k for k, p in enumerate(pts)}
        self.timestamps = [float(p * base) for p in pts]
        self.numbers = list(range(1, len(pts) + 1))
        self.fps = Fraction(rate) if rate else _rate_from_times(self.timestamps)
        self.size = (h, w) if self.rotation % 180 else (w, h)

    def _open(self):
        av = import_av()
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as e:
            raise FootageError(
                f"cannot read video {self.path}: truncated, damaged or not a video ({short_error(e)})"
            ) from None
        if not container.streams.video:
            container.close()
            raise FootageError(f"{self.path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return container, stream

    def _probe(self, container, stream) -> list[int]:
        av = import_av()
        pts = []
        try:
            for frame in container.decode(stream):
                if not pts:  # counter-clockwise degrees that make the picture upright
                    self.rotation = round((frame.rotation or 0) / 90) % 4 * 90
                pts.append(frame.pts if frame.pts is not None else (pts[-1] + 1 if pts else 0))
        except av.error.FFmpegError as e:
            raise FootageError(
                f"video {self.path} is truncated or damaged: decoding stops after frame {len(pts)} ({short_error(e)})"
            ) from None
        # threaded decoders can end quietly at missing data; the index still knows the full count
        # (one frame less may decode legitimately: an edit list can discard a packet)
        if stream.frames > len(pts) + 1:
            raise FootageError(
                f"video {self.path} is truncated or damaged: decoding stops after frame {len(pts)} "
                f"of the {stream.frames} its index lists"
            )
        return sorted(pts)

    def read(self, k):
        if self._decoder is None or k < self._next:
            self._seek(k)
        frame = self._advance(k)
        if frame is None:  # the seek landed past k: decode from the start instead
            self._seek(0)
            frame = self._advance(k)
        if frame is None:
            raise FootageError(f"frame {k + 1} of {self.path} no longer decodes (did the file change?)")
        return np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), self.rotation // 90)), None

    def _advance(self, k: int):
        for frame in self._decoder:
            j = self._pos.get(frame.pts)
            if j is None:
                continue
            self._next = j + 1
            if j >= k:
                return frame if j == k else None
        return None

    def _seek(self, k: int) -> None:
        self.close()
        self._container, stream = self._open()
        if k > 0:
            self._container.seek(self.pts[k], stream=stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(stream)
        self._next = k

    def close(self):
        if self._container is not None:
            self._container.close()
        self._container = self._decoder = None


def _rate_from_times(times: list[float]) -> Fraction | None:
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return Fraction((len(times) - 1) / (times[-1] - times[0])).limit_denominator(100_000)
