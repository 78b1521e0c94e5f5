"""Which GPU runtime fits this machine: the facts (GPU, driver, platform) read from ``nvidia-smi`` and
``rocminfo``, and the pure choice ``choose_build(facts, table)`` over the builds in ``runtimes.json``.

No torch here: the plan must work before any GPU PyTorch exists on the machine.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..contracts.errors import StchainError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# the extension zip carries the table inside the package; a checkout reads the repository's vendor/
VENDOR_DIRS = (PACKAGE_DIR / "runtime" / "vendor", PACKAGE_DIR.parent / "vendor")
SMI_QUERY = "--query-gpu=name,driver_version,compute_cap,memory.total"
SYSTEMS = {"Darwin": "macos"}  # platform.system() -> extension platform prefix (others: lower case)
WINDOWS_SMI = (r"C:\Windows\System32\nvidia-smi.exe", r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe")


@dataclass(frozen=True)
class Gpu:
    name: str
    vendor: str  # "nvidia" | "amd"
    cc: str | None = None  # CUDA compute capability ("8.9"); None when the driver cannot say
    memory_mb: int | None = None


@dataclass(frozen=True)
class Facts:
    system: str  # platform.system(): "Linux", "Windows", "Darwin"
    machine: str  # "x64", "arm64"
    python: str  # "cp311"
    driver: str | None = None  # the NVIDIA driver version
    gpus: tuple[Gpu, ...] = ()

    @property
    def platform(self) -> str:
        """The extension platform name (``linux-x64``, ``windows-x64``, ``macos-arm64``)."""
        return f"{SYSTEMS.get(self.system, self.system.lower())}-{self.machine}"


@dataclass(frozen=True)
class Build:
    name: str
    vendor: str
    torch: str
    device: str  # what verification must see: "cuda" (ROCm too: PyTorch names it cuda), or "cpu" (test builds)
    download_bytes: int
    unpacked_bytes: int
    index: dict = field(default_factory=dict)  # extension platform -> index URL or local folder
    min_driver: str | None = None
    min_cc: str | None = None
    max_cc: str | None = None
    cuda: str | None = None
    rocm: str | None = None

    @property
    def folder(self) -> str:
        """The runtime's folder name: short (Windows paths) and unique per build and torch version."""
        return f"{self.name}-{self.torch}"

    @property
    def disk_needed(self) -> int:
        return 2 * self.unpacked_bytes  # the download and its unpacked copy exist together for a while


@dataclass(frozen=True)
class Plan:
    action: str  # "install" or "none"
    reason: str
    facts: Facts
    build: Build | None = None

    def to_dict(self) -> dict:
        out = {"action": self.action, "reason": self.reason, "platform": self.facts.platform,
               "facts": asdict(self.facts), "build": None}
        if self.build is not None:
            b = self.build
            out["build"] = {**asdict(b), "folder": b.folder, "disk_needed_bytes": b.disk_needed}
        return out

    def lines(self) -> list[str]:
        if self.build is None:
            return [f"nothing to install: {self.reason}"]
        b = self.build
        return [f"build: {b.folder} (torch {b.torch}, {b.cuda and 'CUDA ' + b.cuda or b.rocm and 'ROCm ' + b.rocm})",
                f"why: {self.reason}",
                f"download: {gb(b.download_bytes)}, installed: {gb(b.unpacked_bytes)}, "
                f"free disk space needed: {gb(b.disk_needed)}"]


def gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def version(text: str | None) -> tuple[int, ...]:
    """``"590.44.01"`` -> (590, 44, 1); comparable with a minimum such as ``"580"``."""
    return tuple(int(x) for x in re.findall(r"\d+", text or ""))


def vendor_file(name: str) -> Path:
    for folder in VENDOR_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise StchainError(f"{name} is missing from the extension: reinstall it")


def load_table(path: str | os.PathLike | None = None) -> list[Build]:
    data = json.loads(Path(path or vendor_file("runtimes.json")).read_text())
    return [Build(**b) for b in data["builds"]]


def choose_build(facts: Facts, table: list[Build]) -> Plan:
    """The plan for ``facts`` (pure): macOS and machines without a GPU install nothing; NVIDIA takes
    the first build whose driver minimum and compute capabilities fit; AMD on Linux takes ROCm.
    Raises StchainError (one line) when the machine has a GPU that no build can serve."""
    if facts.system == "Darwin":
        return Plan("none", "macOS: the bundled PyTorch already runs on the Apple GPU (MPS)", facts)
    nvidia = [g for g in facts.gpus if g.vendor == "nvidia"]
    if nvidia:
        return _nvidia(facts, nvidia, [b for b in table if b.vendor == "nvidia"])
    amd = [g for g in facts.gpus if g.vendor == "amd"]
    rocm = [b for b in table if b.vendor == "amd" and facts.platform in b.index]
    if amd and rocm:
        return Plan("install", f"AMD {amd[0].name} on {facts.platform}: the ROCm build", facts, rocm[0])
    if amd:
        return Plan("none", f"AMD {amd[0].name}: PyTorch has no GPU build for {facts.platform}; "
                            "the bundled CPU runtime is used", facts)
    return Plan("none", "no NVIDIA or AMD GPU found (nvidia-smi, rocminfo): the bundled CPU runtime is used", facts)


def _nvidia(facts: Facts, gpus: list[Gpu], builds: list[Build]) -> Plan:
    gpu, driver = gpus[0], facts.driver or "unknown"
    lowest = min((b.min_driver for b in builds), key=version)
    if version(driver) < version(lowest):
        raise StchainError(f"NVIDIA driver {driver} is too old for a GPU runtime (minimum {lowest}): "
                           "update the driver, then plan again")
    builds = [b for b in builds if facts.platform in b.index]
    skipped = []
    for b in builds:
        if version(driver) < version(b.min_driver):
            continue
        misfit = [g for g in gpus if not _cc_fits(g.cc, b)]
        if misfit:
            skipped.append(f"CUDA {b.cuda} dropped compute capability {misfit[0].cc}")
            continue
        why = gpu.name + (f" (compute {gpu.cc})" if gpu.cc else "")
        why += f", driver {driver} >= {b.min_driver}: the CUDA {b.cuda} build"
        return Plan("install", why + "".join(f"; {s}" for s in skipped), facts, b)
    if not builds:
        raise StchainError(f"no GPU runtime is built for {facts.platform}: the bundled CPU runtime is used")
    raise StchainError(f"no GPU runtime supports the {gpu.name} (compute capability {gpu.cc}) "
                       f"with driver {driver}: the bundled CPU runtime is used")


def _cc_fits(cc: str | None, b: Build) -> bool:
    if cc is None:
        return True  # the driver does not report it; the verification catches a GPU the build lacks
    return version(b.min_cc or "0") <= version(cc) <= version(b.max_cc or "99")


# --------------------------------------------------------------------------- probing the machine

def probe(env: dict | None = None) -> Facts:
    """The facts of this machine (``env``'s PATH finds the tools; tests put stand-ins first)."""
    env = dict(os.environ if env is None else env)
    system = platform.system()
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(platform.machine().lower(),
                                                                        platform.machine().lower())
    python = f"cp{sys.version_info.major}{sys.version_info.minor}"
    driver, gpus = nvidia_smi(env, system)
    if not gpus and system == "Linux":
        gpus = _rocminfo(env)
    return Facts(system, machine, python, driver, tuple(gpus))


def _run(tool: str | None, args: list[str], env: dict) -> str | None:
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, *args], capture_output=True, text=True, timeout=20, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def nvidia_smi(env: dict, system: str) -> tuple[str | None, list[Gpu]]:
    """(driver version, NVIDIA GPUs) from ``nvidia-smi``; (None, []) without one."""
    tool = shutil.which("nvidia-smi", path=env.get("PATH"))
    if tool is None and system == "Windows":
        tool = next((p for p in WINDOWS_SMI if os.path.isfile(p)), None)
    out = _run(tool, [SMI_QUERY, "--format=csv,noheader,nounits"], env)
    if out is None:  # drivers before compute_cap was queryable
        out = _run(tool, [SMI_QUERY.replace(",compute_cap", ",0"), "--format=csv,noheader,nounits"], env)
    return parse_smi(out or "")


def parse_smi(text: str) -> tuple[str | None, list[Gpu]]:
    driver, gpus = None, []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 2 or not version(cells[1]):
            continue
        driver = cells[1]
        cc = cells[2] if len(cells) > 2 and re.fullmatch(r"\d+\.\d+", cells[2]) else None
        mem = int(cells[3]) if len(cells) > 3 and cells[3].isdigit() else None
        gpus.append(Gpu(cells[0], "nvidia", cc, mem))
    return driver, gpus


def _rocminfo(env: dict) -> list[Gpu]:
    tool = shutil.which("rocminfo", path=env.get("PATH")) or (
        "/opt/rocm/bin/rocminfo" if os.path.isfile("/opt/rocm/bin/rocminfo") else None)
    return parse_rocminfo(_run(tool, [], env) or "")


def parse_rocminfo(text: str) -> list[Gpu]:
    """GPU agents are the ``gfx*`` names (the CPU agent has none)."""
    names = dict.fromkeys(re.findall(r"^\s*Name:\s*(gfx[0-9a-f]+)\s*$", text, flags=re.M))
    return [Gpu(n, "amd") for n in names]
