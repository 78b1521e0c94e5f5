"""Download the official repositories file by file over HTTPS with the standard library only.

Why this shape: checkpoints are GBs on flaky links, so every file streams into ``NAME.part`` and a
re-run resumes it with an HTTP Range request; the finished file is checked (size, and sha256 where the
server states it: Hugging Face sends the LFS sha256 as ``X-Linked-Etag`` on the redirect to its CDN),
safetensors headers are validated, and only then is the file renamed into place. The sha256 of what
was written is recorded in ``stchain_download.json`` next to the files. Network is only touched here,
on an explicit request.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ...contracts.errors import Cancelled, WeightsError
from ...contracts.safetensors_io import read_header
from .catalogue import REPOS, find_root, repo_files

HF_BASE = "https://huggingface.co"
MANIFEST = "stchain_download.json"
CHUNK = 1 << 20
ALIASES = {"triposg": "TripoSG", "actionmesh": "ActionMesh", "dinov2": "dinov2-large", "dinov2-large": "dinov2-large"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[str, int, "int | None"], None]  # (file, bytes done, bytes total or None)


def resolve_parts(parts) -> list[str]:
    """Repository folder names from user spellings (``triposg``, ``ActionMesh``, ``sam2.1-hiera-small``, ...);
    by default the backbone's repositories and the default SAM 2.1 size."""
    from ..segment import catalogue as sam2  # segmentation checkpoints

    if not parts:
        return list(REPOS) + [sam2.DEFAULT_MODEL]
    out = []
    for p in parts:
        key = ALIASES.get(str(p).lower())
        if key is None and str(p).lower().startswith("sam2"):
            key = sam2.model_name(p)
        if key is None:
            raise WeightsError(f"unknown weights part {p!r}; choose from {', '.join(REPOS)}, {', '.join(sam2.MODELS)}")
        out.append(key)
    return list(dict.fromkeys(out))


def _repo(repo_dir: str) -> tuple[str, list[str]]:
    """(Hugging Face repository, files to fetch) of a weights-root folder."""
    from ..segment import catalogue as sam2

    if repo_dir in sam2.REPOS:
        return sam2.REPOS[repo_dir], list(sam2.FILES)
    return REPOS[repo_dir], repo_files(repo_dir)


class _RedirectRecorder(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib does, keeping each hop's headers (the hash lives on the first)."""

    def __init__(self):
        self.headers = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _expected_sha256(all_headers) -> str | None:
    for headers in all_headers:
        for name in ("X-Linked-Etag", "ETag"):
            value = (headers.get(name) or "").removeprefix("W/").strip('"').lower()
            if _SHA256.match(value):
                return value
    return None


def _open(url: str, offset: int, timeout: float):
    recorder = _RedirectRecorder()
    req = urllib.request.Request(url, headers={"User-Agent": "blender_stchain"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    token = os.environ.get("HF_TOKEN")
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")  # never forwarded to the CDN
    resp = urllib.request.build_opener(recorder).open(req, timeout=timeout)
    return resp, recorder.headers + [resp.headers]


def _total_size(resp, offset: int) -> int | None:
    if resp.status == 206:
        m = re.match(r"bytes (\d+)-\d+/(\d+)", resp.headers.get("Content-Range", ""))
        if not m or int(m.group(1)) != offset:
            raise WeightsError(f"{resp.url}: the server resumed at the wrong offset; delete the .part file and retry")
        return int(m.group(2))
    length = resp.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _hash_file(path: Path, h=None):
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h


def fetch_file(url: str, dest: Path, label: str = "", progress: Progress | None = None,
               cancel: Callable[[], bool] | None = None, timeout: float = 60.0) -> dict:
    """Download ``url`` to ``dest`` (resuming ``dest.part``); returns {size, sha256, url}."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    connected = False
    try:
        try:
            resp, headers = _open(url, offset, timeout)
        except urllib.error.HTTPError as e:
            if e.code != 416 or not offset:
                raise
            part.unlink()  # the partial file is not a prefix the server knows: start over
            offset = 0
            resp, headers = _open(url, 0, timeout)
        connected = True
        with resp:
            if offset and resp.status != 206:
                offset = 0  # the server ignored Range: restart from the beginning
            total = _total_size(resp, offset)
            h = _hash_file(part) if offset else hashlib.sha256()
            done = offset
            with open(part, "ab" if offset else "wb") as f:
                while True:
                    if cancel is not None and cancel():
                        raise Cancelled(f"download cancelled; run it again to resume {label or dest.name}")
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    h.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(label or dest.name, done, total)
    except urllib.error.HTTPError as e:
        hint = " (accept the model licence on huggingface.co and set HF_TOKEN)" if e.code in (401, 403) else ""
        raise WeightsError(f"download of {label or url} failed: HTTP {e.code} {e.reason}{hint}") from None
    except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, OSError) as e:
        if not connected:
            host = urllib.parse.urlsplit(url).netloc
            why = getattr(e, "reason", None) or e
            raise WeightsError(f"cannot reach {host} ({why}): check the network connection or proxy, then run "
                               "the same command again") from None
        raise WeightsError(f"download of {label or url} interrupted ({type(e).__name__}: {e}); "
                           "run the same command again to resume") from None
    size = part.stat().st_size
    if total is not None and size != total:
        raise WeightsError(f"download of {label or url} stopped at {size} of {total} bytes; "
                           "run the same command again to resume")
    digest, expected = h.hexdigest(), _expected_sha256(headers)
    if expected and digest != expected:
        part.unlink()
        raise WeightsError(f"download of {label or url} is corrupt (sha256 {digest[:12]}... != {expected[:12]}...); "
                           "the partial file was deleted, run the command again")
    if dest.suffix == ".safetensors":
        read_header(part)  # raises WeightsError if the header does not match the bytes written
    os.replace(part, dest)
    return {"size": size, "sha256": digest, "url": url, "verified_against_server": bool(expected)}


def _write_manifest(path: Path, entries: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def download(root: Path | None = None, parts=None, progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
             base_url: str | None = None, revision: str = "main", timeout: float = 60.0) -> list[Path]:
    """Fetch the needed files of each repository into ``root/<repo>/``; finished files are skipped."""
    root = find_root(root)
    base = (base_url or HF_BASE).rstrip("/")
    written = []
    for repo_dir in resolve_parts(parts):
        folder = Path(root) / repo_dir
        manifest_path = folder / MANIFEST
        entries = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        repo, files = _repo(repo_dir)
        for rel in files:
            dest = folder / rel
            known = entries.get(rel)
            if known and dest.is_file() and dest.stat().st_size == known["size"]:
                continue
            url = f"{base}/{repo}/resolve/{revision}/{urllib.parse.quote(rel)}"
            entries[rel] = fetch_file(url, dest, f"{repo_dir}/{rel}", progress, cancel, timeout)
            folder.mkdir(parents=True, exist_ok=True)
            _write_manifest(manifest_path, entries)
            written.append(dest)
    return written
