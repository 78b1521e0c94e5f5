"""Real footage carrying a lens in its own metadata, written by the libraries cameras' files are read with:
EXIF FocalLengthIn35mmFilm in JPEG/PNG frames (Pillow) and Apple's QuickTime 35 mm key in a movie (PyAV)."""

from __future__ import annotations

import numpy as np

APPLE_KEY = "com.apple.quicktime.camera.focal_length.35mm_equivalent"


def frames_with_exif(folder, suffix: str, focal_35mm: int, size=(96, 64), count=3):
    from PIL import Image

    folder.mkdir()
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = focal_35mm  # Exif IFD, FocalLengthIn35mmFilm
    exif[0x010F] = "TestMake"  # a Make in IFD0 too, as cameras write
    for i in range(count):
        pixels = np.full((size[1], size[0], 3), 40 * i, np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}{suffix}", exif=exif.tobytes())
    return folder


def tagged_movie(path, focal_35mm: str | None, size=(160, 90), flags="use_metadata_tags", container="mov"):
    """A real movie; FFmpeg writes the key into moov/meta (keys + ilst) as Apple does (the movie header
    at the end of the file, or at its start with ``+faststart``)."""
    import av

    with av.open(str(path), "w", format=container, options={"movflags": flags}) as c:
        if focal_35mm is not None:
            c.metadata[APPLE_KEY] = focal_35mm
            c.metadata["com.apple.quicktime.make"] = "Apple"
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = *size, "yuv420p"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 50 * i, np.uint8), format="rgb24")
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path
