"""Build the Blender extension: stage, fetch wheels, validate, build per-platform zips into dist/.

    python build_addon.py                      # all platforms, wheels for Python 3.11 and 3.13
    python build_addon.py --python 3.11        # one Blender line (4.2-5.0), smaller zips
    python build_addon.py --no-wheels          # no downloads (tests, CI): the package alone

Zips are named ``dist/blender_stchain-VERSION-PLATFORM.zip`` (e.g. ``blender_stchain-0.1.0-linux_x64.zip``);
zips of an earlier build in the output folder are removed first. The manifest must sit next to an ``__init__.py``, so the package and a generated manifest (with
the wheel list) are staged in a fresh ``build/stage-*/`` folder per build (removed after). Wheels come from the pinned lock files
``vendor/cp311.txt`` / ``vendor/cp313.txt`` via ``pip download`` (cached in ``vendor/wheels/``,
never committed): first from pip's ``find-links`` folders alone (``--no-index``: a wheel already on disk,
such as a CPU torch, is used without network), else from the index the lock line names. The extension builder is Blender's own: ``BLENDER --command extension`` when
``--blender`` is given, else the stdlib-only ``blender_ext.py`` shipped in the installed bpy wheel.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "blender_stchain"
PLATFORM_TAGS = {  # extension platform -> pip --platform tags (newest first)
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_14_0_arm64", "macosx_11_0_arm64"],
}
PYTHONS = {"3.11": "cp311", "3.13": "cp313"}
BLENDER_LINE = {"3.11": ("4.2.0", "5.1.0"), "3.13": ("5.1.0", None)}  # min, max (exclusive)
NOT_SHIPPED = ("batch", "evaluation")  # cluster-side (Ray) and benchmark (scipy) code: it never runs inside Blender
NEVER_BUNDLE = {"numpy", "requests", "urllib3", "idna", "certifi", "charset-normalizer", "zstandard",
                "cython", "setuptools"}
VENV_PYTHONS = [p for p in (ROOT / ".venv" / "bin" / "python", ROOT / ".venv" / "Scripts" / "python.exe") if p.exists()]


@dataclass(frozen=True)
class Requirement:
    spec: str  # "name==version"
    platforms: tuple[str, ...]  # empty = every platform
    index: str | None = None

    @property
    def name(self) -> str:
        return normalize(re.split(r"[=<>!~ ]", self.spec, maxsplit=1)[0])


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> list[Requirement]:
    """``name==version [@ plat,plat] [--index URL]`` per line; '#' comments."""
    reqs = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        index = None
        if "--index" in line:
            line, index = (s.strip() for s in line.split("--index", 1))
        spec, _, plats = (s.strip() for s in line.partition("@"))
        if "==" not in spec:
            raise SystemExit(f"lock line {n}: {raw!r} is not pinned (name==version)")
        req = Requirement(spec, tuple(p.strip() for p in plats.split(",") if p.strip()), index)
        unknown = set(req.platforms) - set(PLATFORM_TAGS)
        if unknown:
            raise SystemExit(f"lock line {n}: unknown platform(s) {', '.join(sorted(unknown))}")
        if req.name in NEVER_BUNDLE:
            raise SystemExit(f"lock line {n}: {req.name} ships with Blender and must not be bundled")
        reqs.append(req)
    return reqs


def wheel_plan(pythons, platforms) -> list[tuple[str, str, Requirement]]:
    """(python, platform, requirement) for every wheel a build needs."""
    plan = []
    for py in pythons:
        for req in parse_lock((ROOT / "vendor" / f"{PYTHONS[py]}.txt").read_text()):
            plan += [(py, plat, req) for plat in platforms if not req.platforms or plat in req.platforms]
    return plan


def pip_download_cmd(py: str, plat: str, req: Requirement, dest: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest),
           "--python-version", py, "--implementation", "cp"]
    for tag in PLATFORM_TAGS[plat]:
        cmd += ["--platform", tag]
    if req.index:
        cmd += ["--index-url", req.index]
    return cmd + [req.spec]


def fetch_wheels(plan, cache: Path) -> list[Path]:
    wheels = []
    for py, plat, req in plan:
        dest = cache / PYTHONS[py] / plat / req.name
        found = sorted(dest.glob("*.whl")) if dest.is_dir() else []
        if not found:
            found = [download(py, plat, req, dest)]
        if len(found) != 1:
            raise SystemExit(f"expected one wheel for {req.spec} ({PYTHONS[py]}, {plat}) in {dest}, found {len(found)}")
        wheels.append(found[0])
    return list(dict.fromkeys(wheels))  # pure-Python wheels are shared between platforms


def download(py: str, plat: str, req: Requirement, dest: Path) -> Path:
    """One wheel into the cache, downloaded beside it and moved in whole: two builds at once (the test
    matrix runs them side by side) never see a half-written wheel."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest.parent) as tmp:
        local = subprocess.run([*pip_download_cmd(py, plat, req, Path(tmp)), "--no-index"], capture_output=True)
        if local.returncode != 0:  # not in pip's find-links folders: the index (network)
            subprocess.run(pip_download_cmd(py, plat, req, Path(tmp)), check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        dest.mkdir(exist_ok=True)
        os.replace(wheel, dest / wheel.name)
    return dest / wheel.name


def manifest_text(template: str, wheels: list[str], pythons, platforms) -> str:
    """The staged manifest: wheel list, platforms, and the Blender versions the Pythons cover."""
    lines = ",\n".join(f'  "./wheels/{w}"' for w in wheels)
    lo = min(BLENDER_LINE[p][0] for p in pythons)
    his = [BLENDER_LINE[p][1] for p in pythons]
    hi = None if None in his else max(his)
    subs = {
        r"^# wheels:.*$": f"wheels = [\n{lines}\n]" if wheels else "",
        r"^# blender_version_max:.*$": f'blender_version_max = "{hi}"' if hi else "",
        r'^blender_version_min = .*$': f'blender_version_min = "{lo}"',
        r"^platforms = .*$": "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]",
    }
    for pattern, repl in subs.items():
        text, n = re.subn(pattern, lambda m: repl, template, flags=re.M)
        if n != 1:
            raise SystemExit(f"blender_manifest.toml: expected one line matching {pattern}")
        template = text
    return template


def stage(stage_dir: Path, wheels: list[Path], pythons, platforms) -> Path:
    src = stage_dir / "blender_stchain"
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *NOT_SHIPPED))
    (src / "wheels").mkdir()
    for w in wheels:
        shutil.copy2(w, src / "wheels" / w.name)
    runtime_data = src / "runtime" / "vendor"  # the GPU runtime table and locks travel inside the package
    runtime_data.mkdir()
    for f in [ROOT / "vendor" / "runtimes.json", *sorted((ROOT / "vendor").glob("runtime-lock-*.txt"))]:
        shutil.copy2(f, runtime_data / f.name)
    template = (ROOT / "blender_manifest.toml").read_text()
    (src / "blender_manifest.toml").write_text(manifest_text(template, [w.name for w in wheels], pythons, platforms))
    return src


def builder_cmd(blender: str | None) -> list[str]:
    """Blender's extension tool: ``--blender``'s, else ``blender_ext.py`` from the bpy module of this
    interpreter or of the repository's ``.venv`` (so any ``python build_addon.py`` works after setup)."""
    if blender:
        return [blender, "--factory-startup", "--command", "extension"]
    for python in (sys.executable, *VENV_PYTHONS):
        origin = bpy_origin(python)
        if origin:
            found = sorted(Path(origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
            if found:
                return [str(python), str(found[-1])]
    raise SystemExit("error: no Blender extension tool found: run `bash scripts/setup.sh` (it installs the bpy "
                     "module into .venv), or pass --blender /path/to/blender")


def bpy_origin(python) -> str | None:
    """Where ``python`` finds the bpy module (None: it has none)."""
    if str(python) == sys.executable:
        spec = importlib.util.find_spec("bpy")
        return spec.origin if spec is not None else None
    probe = "import importlib.util as u; s = u.find_spec('bpy'); print(s.origin if s else '')"
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or None


def remove_stale(out: Path) -> list[Path]:
    """Zips of an earlier build in ``out`` (another platform set or version) would sit beside the new ones."""
    stale = sorted(out.glob("blender_stchain-*.zip"))
    for z in stale:
        z.unlink()
    return stale


def build(out: Path, pythons, platforms, no_wheels: bool, blender: str | None) -> list[Path]:
    plan = [] if no_wheels else wheel_plan(pythons, platforms)
    wheels = fetch_wheels(plan, ROOT / "vendor" / "wheels")
    (ROOT / "build").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stage-", dir=ROOT / "build") as stage_dir:  # one per build
        src = stage(Path(stage_dir), wheels, pythons, platforms)
        tool = builder_cmd(blender)
        subprocess.run([*tool, "validate", str(src)], check=True)
        out.mkdir(parents=True, exist_ok=True)
        remove_stale(out)
        subprocess.run([*tool, "build", "--source-dir", str(src), "--output-dir", str(out), "--split-platforms"],
                       check=True)
    zips = sorted(out.glob("blender_stchain-*.zip"))
    for z in zips:
        subprocess.run([*tool, "validate", str(z)], check=True)
    return zips


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "dist"), help="output folder for the zips")
    p.add_argument("--python", action="append", choices=sorted(PYTHONS), help="Python line(s) to carry wheels for")
    p.add_argument("--platform", action="append", choices=sorted(PLATFORM_TAGS), help="platform(s) to build")
    p.add_argument("--no-wheels", action="store_true", help="skip the wheels (no downloads)")
    p.add_argument("--blender", default=None, help="a Blender binary to build and validate with")
    args = p.parse_args(argv)
    zips = build(Path(args.out), args.python or sorted(PYTHONS), args.platform or list(PLATFORM_TAGS),
                 args.no_wheels, args.blender)
    for z in zips:
        print(f"{z} {z.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
