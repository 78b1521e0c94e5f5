"""Device and precision choice: the one module that decides where the models run and in what dtype.

``probe()`` reads what this machine offers into ``Facts`` (plain values, no torch objects);
``decide(facts, device, precision)`` is a pure function of them, so every rule is tested with
constructed facts on a CPU:

- CUDA: bf16 from compute capability 8.0 (Ampere) on; before that fp16, although
  ``torch.cuda.is_bf16_supported()`` says yes there: bf16 is emulated, and the fused attention
  kernels refuse it (the math path then holds whole score matrices).
- MPS: bf16 from macOS 14 on (the precision the reference runs in; fp16's range, 65504, is a risk in
  the transformers' residual streams, while bf16 keeps fp32's range), fp16 before (MPS has no bf16
  before macOS 14). Weights are stored in the compute precision as on CUDA.
- CPU: fp32.
A CUDA build that cannot use its GPU (driver too old, no kernels for the card's architecture) is one
line: ``auto`` warns and falls back, an explicit ``cuda`` is a ``StchainError``; never a silent CPU run.

Under autocast the models keep the reference's fp32 islands themselves (FP32LayerNorm, RMSNorm
variance, RoPE, the time sinusoids, the stage-II query pass). TF32 is disabled so GPU fp32 runs
stay within the parity tolerances.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import warnings
from dataclasses import dataclass, field

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..contracts.errors import StchainError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
SDPA_ORDER = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
NATIVE_BF16 = (8, 0)  # compute capability of Ampere, the first NVIDIA generation with bf16 tensor cores
MPS_BF16_MACOS = (14, 0)  # MPS has bf16 from macOS 14 (Sonoma)
MPS_FALLBACK = "PYTORCH_ENABLE_MPS_FALLBACK"  # set by the worker before torch is imported
# the oldest NVIDIA driver each CUDA major release runs on (NVIDIA's minor-version compatibility table)
DRIVER_FOR_CUDA = {11: "450.80", 12: "525.60", 13: "580.65"}


@dataclass(frozen=True)
class Card:
    """One CUDA device as the probe saw it."""

    name: str
    capability: tuple[int, int]
    total_gib: float = 0.0


@dataclass(frozen=True)
class Facts:
    """What the probe found; ``decide`` reads nothing else."""

    torch_version: str = ""
    cuda_build: str | None = None  # torch.version.cuda: None in a CPU or MPS build
    cuda_available: bool = False
    cuda_warning: str = ""  # what torch said while initialising CUDA (e.g. "driver ... too old")
    driver: str | None = None  # the NVIDIA driver version found (None: no NVIDIA driver found)
    cards: tuple[Card, ...] = ()
    arch_list: tuple[str, ...] = ()  # torch.cuda.get_arch_list(): the architectures the build has kernels for
    mps_built: bool = False
    mps_available: bool = False
    macos: tuple[int, int] | None = None  # macOS version (major, minor); None elsewhere
    mps_fallback: bool = False  # PYTORCH_ENABLE_MPS_FALLBACK=1: ops MPS lacks run on the CPU


@dataclass(frozen=True)
class Decision:
    device: str  # "cpu", "cuda:N" or "mps"
    precision: str  # "fp32" | "bf16" | "fp16"
    reason: str  # why this precision (and device), one line
    warnings: tuple[str, ...] = ()  # fallbacks taken and problems that changed the choice: warning events


# --------------------------------------------------------------------------- pure rules

def arch_supported(capability: tuple[int, int], arch_list) -> bool:
    """Whether a build with ``arch_list`` runs on a card of ``capability``: a cubin of the same major
    and a minor no higher (binary compatible), or PTX (``compute_XY``) no newer than the card (JIT).
    An empty list (a build that does not say) counts as supported."""
    major, minor = capability
    if not arch_list:
        return True
    for arch in arch_list:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", arch)
        if not m:
            continue
        kind, a_major, a_minor = m.group(1), int(m.group(2)), int(m.group(3))
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def _sm(capability: tuple[int, int]) -> str:
    return f"sm_{capability[0]}{capability[1]}"


def driver_problem(f: Facts) -> str | None:
    """A CUDA build whose driver cannot run it (found, but too old), as one line; None otherwise."""
    if not f.cuda_build or f.cuda_available:
        return None
    said = f.cuda_warning.lower()
    said_driver = "too old" in said or "insufficient" in said  # torch's words for a driver behind the build
    if f.driver is None and not said_driver:
        return None  # no NVIDIA GPU here: nothing is wrong
    major = int(f.cuda_build.split(".")[0])
    need = DRIVER_FOR_CUDA.get(major)
    found = f"NVIDIA driver {f.driver}" if f.driver else "the NVIDIA driver"
    return (f"CUDA: {found} is too old for this torch build (CUDA {f.cuda_build}"
            f"{f', needs driver {need} or newer' if need else ''}): update the NVIDIA driver, or install the "
            "runtime built for an older CUDA")


def arch_problem(f: Facts, index: int) -> str | None:
    """A card the build has no kernels for, as one line ("no kernel image is available")."""
    card = f.cards[index]
    if arch_supported(card.capability, f.arch_list):
        return None
    return (f"CUDA: this torch build has no kernels for {card.name} ({_sm(card.capability)}; it has "
            f"{' '.join(f.arch_list)}): install a torch build that lists {_sm(card.capability)} (a newer CUDA)")


def emulated_bf16(card: Card) -> str | None:
    if card.capability >= NATIVE_BF16:
        return None
    return (f"CUDA: bf16 is only emulated on {card.name} (compute capability {card.capability[0]}."
            f"{card.capability[1]}, before Ampere): slow, and the fused attention kernels refuse it")


def cuda_precision(card: Card) -> tuple[str, str]:
    cc = f"compute capability {card.capability[0]}.{card.capability[1]}"
    if card.capability >= NATIVE_BF16:
        return "bf16", f"{card.name}, {cc}: native bf16 (the reference's precision)"
    return "fp16", f"{card.name}, {cc}: bf16 only emulated before Ampere, so fp16 (fused attention kernels)"


def mps_precision(f: Facts) -> tuple[str, str]:
    if f.macos is not None and f.macos < MPS_BF16_MACOS:
        return "fp16", f"Apple GPU on macOS {f.macos[0]}.{f.macos[1]}: MPS has no bf16 before macOS 14, so fp16"
    return "bf16", "Apple GPU: bf16 (the reference's precision, fp32's range), weights stored in bf16"


def mps_notes(f: Facts) -> list[str]:
    if f.mps_fallback:
        return []
    return [f"MPS: {MPS_FALLBACK} is not set: an operation MPS lacks stops the run (the worker and the command "
            "line set it)"]


def usable_cards(f: Facts) -> list[int]:
    return [i for i in range(len(f.cards)) if f.cuda_available and arch_problem(f, i) is None]


def _auto_device(f: Facts) -> tuple[str, list[str]]:
    """``auto``: the first CUDA card the build runs on, then MPS, then the CPU; each problem on the way
    becomes a warning naming the fallback taken."""
    problems = [p for p in [driver_problem(f)] + [arch_problem(f, i) for i in range(len(f.cards))] if p]
    usable = usable_cards(f)
    if usable:
        return f"cuda:{usable[0]}", [p + f"; running on cuda:{usable[0]}" for p in problems]
    fallback = "mps" if f.mps_available else "cpu"
    where = "the Apple GPU (mps)" if fallback == "mps" else "the CPU (slow)"
    return fallback, [p + f"; running on {where} instead" for p in problems]


def _explicit_device(f: Facts, name: str) -> str:
    """An explicit ``cuda[:N]``/``mps``/``cpu``: the device, or one StchainError line naming the fix."""
    if name == "cpu":
        return "cpu"
    if name == "mps":
        if not f.mps_available:
            why = "this torch build has no MPS" if not f.mps_built else "MPS needs an Apple GPU and macOS 12.3+"
            raise StchainError(f"device 'mps' is not available on this machine ({why}): use --device cpu")
        return "mps"
    m = re.fullmatch(r"cuda(?::(\d+))?", name)
    if m is None:
        raise StchainError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    index = int(m.group(1) or 0)
    problem = driver_problem(f)
    if problem:
        raise StchainError(f"{problem}; or use --device cpu")
    if not f.cuda_available or index >= len(f.cards):
        found = "this torch build has no CUDA" if not f.cuda_build else f"{len(f.cards) if f.cuda_available else 0} " \
                "CUDA device(s) found"
        raise StchainError(f"device {name!r} is not available ({found}): use --device cpu, or install the GPU runtime")
    problem = arch_problem(f, index)
    if problem:
        raise StchainError(f"{problem}; or use --device cpu")
    return f"cuda:{index}"


def _precision(f: Facts, device: str, precision: str) -> tuple[str, str, list[str]]:
    """(precision, why, warnings) on ``device``."""
    kind = device.split(":")[0]
    if kind == "cuda":
        auto, why = cuda_precision(f.cards[int(device.split(":")[1])])
    elif kind == "mps":
        auto, why = mps_precision(f)
    else:
        auto, why = "fp32", "CPU: fp32"
    if precision == "auto":
        return auto, why, []
    if precision not in PRECISIONS:
        raise StchainError(f"unknown precision {precision!r}: use auto, {', '.join(PRECISIONS)}")
    if kind == "cpu" and precision == "fp16":
        raise StchainError("fp16 is not supported on CPU: use fp32 (or bf16)")
    if kind == "mps" and precision == "bf16" and auto == "fp16":
        raise StchainError("bf16 on MPS needs macOS 14 or newer: use --precision fp16 (or auto)")
    notes = []
    if kind == "cuda" and precision == "bf16":
        emulated = emulated_bf16(f.cards[int(device.split(":")[1])])
        notes = [f"{emulated}; --precision fp16 (or auto) runs faster in less memory"] if emulated else []
    return precision, f"--precision {precision} as asked ({why.split(':')[0]})", notes


def decide(facts: Facts, device: str = "auto", precision: str = "auto") -> Decision:
    """Where and in what precision a run goes, from the probed facts alone."""
    name = (device or "auto").strip().lower()
    if name == "auto":
        dev, notes = _auto_device(facts)
    else:
        dev, notes = _explicit_device(facts, name), []
    prec, why, more = _precision(facts, dev, precision)
    if dev == "mps":
        more = more + mps_notes(facts)
    return Decision(dev, prec, why, tuple(notes + more))


def diagnose(f: Facts) -> list[str]:
    """Every problem the facts show, one line each (the ``devices`` report)."""
    lines = [driver_problem(f)] + [arch_problem(f, i) for i in range(len(f.cards))]
    lines += [emulated_bf16(c) for c in f.cards]
    if f.mps_available:
        lines += mps_notes(f)
    elif f.mps_built and f.macos is not None:
        lines.append(f"MPS: built into torch but not available on macOS {f.macos[0]}.{f.macos[1]} (needs 12.3+ "
                     "and an Apple GPU)")
    return [line for line in lines if line]


# --------------------------------------------------------------------------- probing this machine

def nvidia_driver() -> str | None:
    """The NVIDIA driver version from the kernel module (Linux), else ``nvidia-smi`` (read as the GPU runtime's
    plan reads it: PATH, then its standard Windows places); None if neither."""
    try:
        text = open("/proc/driver/nvidia/version", encoding="utf-8").read()
        m = re.search(r"Kernel Module\s+(\d+\.\d+(?:\.\d+)?)", text)
        if m:
            return m.group(1)
    except OSError:
        pass
    from ..runtime.plan import nvidia_smi

    return nvidia_smi(dict(os.environ), platform.system())[0]


def _macos() -> tuple[int, int] | None:
    version = platform.mac_ver()[0]
    if not version:
        return None
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
    return (parts[0], parts[1] if len(parts) > 1 else 0)


def probe(driver: bool = False) -> Facts:
    """This machine's facts. The driver is looked for only where it matters: a CUDA build without CUDA
    (to tell "no GPU" from "driver too old"), or when asked (``driver``: the ``devices`` report)."""
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    cuda_warning = " ".join(" ".join(str(w.message).split()) for w in said if "cuda" in str(w.message).lower())
    cards = tuple(_card(i) for i in range(torch.cuda.device_count())) if available else ()
    mps = getattr(torch.backends, "mps", None)
    return Facts(
        torch_version=torch.__version__, cuda_build=torch.version.cuda, cuda_available=available,
        cuda_warning=cuda_warning, cards=cards,
        driver=nvidia_driver() if torch.version.cuda and (driver or not available) else None,
        arch_list=tuple(torch.cuda.get_arch_list()) if available else (),
        mps_built=bool(mps and mps.is_built()), mps_available=bool(mps and mps.is_available()), macos=_macos(),
        mps_fallback=os.environ.get(MPS_FALLBACK) == "1",
    )


def _card(index: int) -> Card:
    p = torch.cuda.get_device_properties(index)
    return Card(p.name, (p.major, p.minor), round(p.total_memory / 2**30, 1))


MPS_FELL_BACK = "will fall back to run on the CPU"  # torch's words when PYTORCH_ENABLE_MPS_FALLBACK acts


@contextlib.contextmanager
def fallback_events(warn):
    """Torch's warnings that an operation MPS lacks ran on the CPU become ``warn(line)`` (a run's warning
    events), once per operation; every other warning goes where it went before."""
    shown, seen = warnings.showwarning, set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        if MPS_FELL_BACK not in text:
            return shown(message, category, filename, lineno, file, line)
        op = text.split("'")[1] if text.count("'") >= 2 else text
        if op not in seen:
            seen.add(op)
            warn(f"MPS: {op} is missing on the Apple GPU and ran on the CPU (slower); a newer macOS or torch may "
                 "have it")

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


# --------------------------------------------------------------------------- the runtime a run uses

@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype  # autocast compute dtype; float32 means plain fp32 (no autocast)
    notes: tuple[str, ...] = field(default=(), compare=False)  # the decision's warnings, for the run's events

    def autocast(self):
        """The context the models run under: autocast for bf16/fp16 (nothing for fp32), and on CUDA the
        exact SDPA backends in speed order (cuDNN, flash, memory-efficient; math last)."""
        stack = contextlib.ExitStack()
        if self.device.type == "cuda":
            stack.enter_context(sdpa_kernel(SDPA_ORDER, set_priority=True))
        if self.dtype != torch.float32:
            stack.enter_context(torch.autocast(self.device.type, dtype=self.dtype))
        return stack


def disable_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def runtime(device: str = "auto", precision: str = "auto", facts: Facts | None = None) -> Runtime:
    disable_tf32()
    d = decide(facts or probe(), device, precision)
    return Runtime(torch.device(d.device), PRECISIONS[d.precision], d.warnings)


def synchronize(device) -> None:
    """Wait for the device's queued work (a timing then covers the work, not its launch)."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


def empty_cache(device) -> None:
    """Hand the device allocator's cached blocks back (after a model is dropped, before a retry)."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.empty_cache()
    elif kind == "mps":
        torch.mps.empty_cache()


# A simulated accelerator (the test harness: CPU data presented as a device) names the real device
# whose rules it follows; nothing else fills this.
_SIMULATED: dict[str, str] = {}


def rules(device) -> str:
    """The device kind whose rules apply to ``device``: ``cpu``, ``cuda`` or ``mps``. Callers choose by
    it where a device lacks something (float64 or ops missing on MPS, concurrent MPS use)."""
    kind = torch.device(device).type
    return _SIMULATED.get(kind, kind)


def geometry_device(device) -> torch.device:
    """Where mesh geometry runs beside a model on ``device``: the device itself, but the host on MPS
    (float64 quadrics and fits, int64 scatter_reduce min/max, unique/sort of keys >= 2^24 and
    linalg.svd are missing or wrong there; the models still run on MPS)."""
    return torch.device("cpu") if rules(device) == "mps" else torch.device(device)


@contextlib.contextmanager
def simulate(device: torch.device, flavour: str):
    """Within the block, ``device`` follows the rules of ``flavour`` (``cuda`` or ``mps``)."""
    before = _SIMULATED.get(device.type)
    _SIMULATED[device.type] = flavour
    try:
        yield
    finally:
        if before is None:
            _SIMULATED.pop(device.type, None)
        else:
            _SIMULATED[device.type] = before
