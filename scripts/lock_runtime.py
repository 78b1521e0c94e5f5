"""Regenerate the GPU runtime locks ``vendor/runtime-lock-<build>.txt`` and the sizes in
``vendor/runtimes.json``.

    python scripts/lock_runtime.py                 # every build, Python 3.11 and 3.13
    python scripts/lock_runtime.py --build cu130   # one build

For a platform whose index is PyPI the lock is complete: torch's whole dependency closure (wheel
metadata read without downloading a wheel, markers evaluated for that platform and Python, extras
followed), each wheel's sha256 from PyPI, the download size, and the unpacked size read from each
wheel's zip directory with HTTP range requests. numpy and setuptools are never locked: Blender's stay.
PyTorch's own index (the CUDA 12 and ROCm builds, Windows) must be reachable for the rest; where it
was not, the section holds a ``PLACEHOLDER`` hash, which the installer refuses with one line.
Dev-time tool: needs ``packaging`` (in the dev venv), never runs inside Blender.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import urllib.error
import urllib.request
import zipfile
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urljoin

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "vendor"
PYPI_INDEX = "https://pypi.org/simple"
PLACEHOLDER = "PLACEHOLDER"  # the installer refuses a section holding it
PYPI_JSON = "https://pypi.org/pypi/{}/json"
NEVER = {"numpy", "setuptools"}
PLATFORM_TAG = {"linux-x64": re.compile(r"^manylinux_2_(\d+)_x86_64$|^manylinux2014_x86_64$|^any$"),
                "windows-x64": re.compile(r"^win_amd64$|^any$")}
MARKERS = {"linux-x64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                         "os_name": "posix"},
           "windows-x64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                           "os_name": "nt"}}
MAX_GLIBC = 28  # manylinux_2_28: what Blender's supported Linux distributions provide


@lru_cache(maxsize=None)
def project(name: str, index: str = PYPI_INDEX) -> tuple[str, dict]:
    """``(url, {"releases": {version: [file records]}})`` from PyPI's JSON or a simple index page."""
    if index.rstrip("/") == PYPI_INDEX:
        url = PYPI_JSON.format(canonicalize_name(name))
        with urllib.request.urlopen(url, timeout=60) as r:
            return url, json.load(r)
    url = f"{index.rstrip('/')}/{canonicalize_name(name)}/"
    with urllib.request.urlopen(url, timeout=60) as r:
        page = r.read().decode()
    releases: dict = {}
    for href, digest in re.findall(r'href="([^"#]+)#sha256=([0-9a-f]{64})"', page):
        filename = unquote(href.rsplit("/", 1)[-1])
        if filename.endswith(".whl"):
            version = str(parse_wheel_filename(filename)[1])
            releases.setdefault(version, []).append({"filename": filename, "url": href, "size": None,
                                                     "digests": {"sha256": digest}})
    return url, {"releases": releases}


def size_of(url: str) -> int:
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60) as r:
        return int(r.headers["Content-Length"])


def fits(filename: str, platform: str, python: str) -> bool:
    _, _, _, tags = parse_wheel_filename(filename)
    for tag in tags:
        plat = PLATFORM_TAG[platform].match(tag.platform)
        glibc_ok = plat is not None and (plat.lastindex is None or not plat.group(1) or int(plat.group(1)) <= MAX_GLIBC)
        py_ok = tag.interpreter in (python, "py3") or (tag.abi == "abi3" and tag.interpreter <= python)
        if glibc_ok and py_ok and tag.abi in (python, "abi3", "none"):
            return True
    return False


def pick(req: Requirement, platform: str, python: str, index: str) -> dict | None:
    """The newest release satisfying ``req`` with a wheel for the platform: its file record."""
    url, data = project(req.name, index)
    for version in sorted(filter(valid, data["releases"]), key=Version, reverse=True):
        if Version(version).is_prerelease or version not in req.specifier:
            continue
        files = [f for f in data["releases"][version] if f["filename"].endswith(".whl") and not f.get("yanked")
                 and fits(f["filename"], platform, python)]
        if files:
            found = {**files[0], "version": version, "url": urljoin(url, files[0]["url"])}
            return {**found, "size": found["size"] or size_of(found["url"])}
    return None


def valid(version: str) -> bool:
    try:
        Version(version)
    except InvalidVersion:
        return False  # ancient releases named outside PEP 440
    return True


def requires(wheel: dict) -> list[str]:
    """Requires-Dist of a wheel: its metadata file on the index, else read from the wheel's zip."""
    try:
        with urllib.request.urlopen(wheel["url"] + ".metadata", timeout=60) as r:
            text = r.read().decode()
    except urllib.error.HTTPError:
        with zipfile.ZipFile(remote(wheel)) as z:
            text = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def applies(req: Requirement, env: dict, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}))


def closure(root: str, platform: str, python: str, index: str = PYPI_INDEX) -> list[tuple[str, dict]]:
    """Every wheel ``root`` needs on the platform (breadth first), numpy and setuptools left out."""
    env = {**MARKERS[platform], "python_version": f"{python[2]}.{python[3:]}", "implementation_name": "cpython"}
    queue, done, out = [(Requirement(root), set())], {}, []
    while queue:
        req, extras = queue.pop(0)
        key = canonicalize_name(req.name)
        if key in NEVER:
            continue
        if key in done:
            queue += [(Requirement(d), req.extras) for d in done[key] if applies(Requirement(d), env, req.extras)]
            continue
        wheel = pick(req, platform, python, index)
        if wheel is None:
            raise SystemExit(f"no wheel of {req} for {platform} {python} on {index}")
        done[key] = deps = requires(wheel)
        out.append((f"{key}=={wheel['version']}", wheel))
        queue += [(Requirement(d), req.extras) for d in deps if applies(Requirement(d), env, req.extras)]
    return out


class RangeFile(io.RawIOBase):
    """A remote file read with HTTP range requests (zipfile reads only the end: the directory)."""

    def __init__(self, url: str, size: int):
        self.url, self.size, self.pos = url, size, 0

    def seekable(self):
        return True

    def readable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=0):
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def readinto(self, buffer):
        end = min(self.pos + len(buffer), self.size) - 1
        if end < self.pos:
            return 0
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.pos}-{end}"})
        with urllib.request.urlopen(request, timeout=120) as r:
            data = r.read()
            if r.status == 200:  # a server that ignores ranges sends the whole file
                data = data[self.pos:end + 1]
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def remote(wheel: dict) -> io.BufferedReader:
    return io.BufferedReader(RangeFile(wheel["url"], wheel["size"]), buffer_size=1 << 20)


def unpacked(wheel: dict) -> int:
    with zipfile.ZipFile(remote(wheel)) as z:
        return sum(i.file_size for i in z.infolist())


def section(build: dict, platform: str, python: str, measure: bool) -> tuple[list[str], int, int]:
    index = build["index"].get(platform)
    if index is None:
        return [], 0, 0
    torch = f"torch=={build['torch']}"
    if index.rstrip("/") != PYPI_INDEX:  # PyTorch's own index names its builds with a local version
        torch += "+" + index.rstrip("/").rsplit("/", 1)[-1]
    try:
        wheels = closure(torch, platform, python, index)
    except urllib.error.URLError as e:
        print(f"{build['name']} {platform} {python}: {index} not reachable ({e.reason}): placeholder", file=sys.stderr)
        return [f"{torch} --hash=sha256:{PLACEHOLDER}  # {index} was not reachable when this lock was made"], 0, 0
    lines = [f"{spec} --hash=sha256:{w['digests']['sha256']}" for spec, w in wheels]
    size = sum(w["size"] for _, w in wheels)
    return lines, size, sum(unpacked(w) for _, w in wheels) if measure else 0


def lock(build: dict, pythons, measure: bool) -> str:
    out = [f"# GPU runtime lock for the {build['name']} build (torch {build['torch']}): scripts/lock_runtime.py",
           "# [PLATFORM PYTHON] sections; every wheel pinned with its sha256 (pip --require-hashes --no-deps)."]
    for platform in build["index"]:
        for python in pythons:
            lines, size, full = section(build, platform, python, measure and python == pythons[0])
            if lines:
                out += ["", f"[{platform} {python}]", *lines]
            if size and platform == "linux-x64" and python == pythons[0]:
                build["download_bytes"] = size
                build["unpacked_bytes"] = full or build["unpacked_bytes"]
                print(f"{build['name']} {platform} {python}: {len(lines)} wheels, {size / 1e9:.2f} GB download, "
                      f"{full / 1e9:.2f} GB unpacked")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", action="append", help="build name(s) (default: all)")
    p.add_argument("--python", action="append", help="cp311, cp313 (default: both)")
    p.add_argument("--no-measure", action="store_true", help="skip the unpacked sizes (range requests)")
    args = p.parse_args(argv)
    table_path = VENDOR / "runtimes.json"
    table = json.loads(table_path.read_text())
    for build in table["builds"]:
        if args.build and build["name"] not in args.build:
            continue
        try:
            text = lock(build, args.python or ["cp311", "cp313"], not args.no_measure)
        except (urllib.error.URLError, OSError) as e:
            print(f"error: {build['name']}: {e}", file=sys.stderr)
            return 1
        (VENDOR / f"runtime-lock-{build['name']}.txt").write_text(text)
    table_path.write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
