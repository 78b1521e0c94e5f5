"""A backbone's models by part name: loaded when first used, optionally one at a time on the device.

Loading order follows use, so the stage-I models (DINOv2-L, the denoiser) load only once the first
window needs them, after the stage-0 models (the DiT, its DINOv2 copy) are released: they are never on
the device together. Each part is read and cast to its storage dtype on the host, then moved, so a
part never sits on the device in fp32 first. With offload (``--offload models``) only the part in use
is on the device; the others wait on the host and are moved in per use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import torch

from ...contracts.errors import OutOfMemory, out_of_memory
from ..weights.loading import COMPUTE_PRECISION_PARTS, storage_dtypes

__all__ = ["COMPUTE_PRECISION_PARTS", "Parts", "host_loader", "meta_part", "part_bytes"]

HOST = torch.device("cpu")
def part_bytes(name: str, model: torch.nn.Module, compute: torch.dtype) -> int:
    """Bytes part ``name`` holds once stored (``model`` may be a meta build: shapes only)."""
    dtypes = storage_dtypes(name, model, compute)
    return sum(v.numel() * (dtypes[k].itemsize if k in dtypes else v.element_size())
               for k, v in model.state_dict().items())


class Parts(Mapping):
    """The models by part name. ``loaders[name]()`` returns part ``name`` on the host, in its storage
    dtypes; ``specs(name)`` its meta build (shapes without weights, for the time estimate). ``log``
    records ``(what, part)`` for every load, move and release, in order."""

    def __init__(self, device: torch.device, loaders: dict[str, Callable[[], torch.nn.Module]], specs=None,
                 loaded: dict | None = None):
        self.device, self.offload = device, False
        self._loaders, self._specs = dict(loaders), specs
        self._loaded: dict[str, torch.nn.Module] = dict(loaded or {})
        self._resident: str | None = None  # with offload: the one part on the device
        self.log: list[tuple[str, str]] = []

    def __getitem__(self, name: str) -> torch.nn.Module:
        if name not in self._loaded:
            if name not in self._loaders:
                raise KeyError(name)
            if self.offload:
                self._send_home()  # room for the newcomer first
            self._loaded[name] = self._place(name, self._loaders.pop(name)())
            self._resident = name if self.offload else self._resident
            self.log.append(("load", name))
        elif self.offload and self._resident != name:
            self._send_home()
            self._place(name, self._loaded[name])
            self._resident = name
            self.log.append(("in", name))
        return self._loaded[name]

    def __iter__(self):
        return iter([*self._loaded, *self._loaders])

    def __len__(self) -> int:
        return len(self._loaded) + len(self._loaders)

    def __contains__(self, name) -> bool:
        return name in self._loaded or name in self._loaders

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def spec(self, name: str) -> torch.nn.Module:
        """Part ``name`` itself when loaded, else its meta build (no weights read, nothing moved)."""
        if name in self._loaded or self._specs is None:
            return self._loaded[name]
        return self._specs(name)

    def pop(self, name: str, default=None):
        """Drop a part for good (loaded or not)."""
        if name == self._resident:
            self._resident = None
        found = self._loaded.pop(name) if name in self._loaded else self._loaders.pop(name, None)
        if found is not None:
            self.log.append(("release", name))
        return found if found is not None else default

    def set_offload(self, on: bool) -> None:
        """From now on keep only the part in use on the device (``on``), or every loaded part."""
        self.offload = on
        if on:
            for name, model in self._loaded.items():
                model.to(HOST)
            self._resident = None
        else:
            for name in self._loaded:
                self._place(name, self._loaded[name])

    def _send_home(self) -> None:
        if self._resident is not None and self._resident in self._loaded:
            self._loaded[self._resident].to(HOST)
            self.log.append(("out", self._resident))
        self._resident = None

    def _place(self, name: str, model: torch.nn.Module) -> torch.nn.Module:
        """Move a part (already in its storage dtypes) to the device; out of memory there is one line."""
        try:
            return model.to(self.device)
        except Exception as e:
            if not out_of_memory(e):
                raise
            model.to(HOST)
            raise OutOfMemory(load_oom_message(name, self.device, self.offload)) from None


def load_oom_message(name: str, device: torch.device, offload: bool) -> str:
    free = ""
    if device.type == "cuda":
        free = f" ({torch.cuda.mem_get_info(device)[0] / 2**30:.1f} GiB free)"
    if device.type == "cpu":
        return f"out of memory loading the {name} weights into host memory: close other programs"
    fixes = "close other programs using the GPU" if offload else "use --offload models (only the running model on " \
        "the GPU), close other programs using the GPU"
    return (f"out of memory loading the {name} weights onto {device}{free}: {fixes}, use --precision fp16, or "
            "run with --device cpu")


def host_loader(root, name: str, compute: torch.dtype) -> Callable[[], torch.nn.Module]:
    """Part ``name`` read and cast to its storage dtypes on the host (then the caller moves it)."""
    from .. import weights

    def load():
        try:
            return weights.load_component(root, name, device=HOST, compute=compute).requires_grad_(False)
        except Exception as e:
            if not out_of_memory(e):
                raise
            raise OutOfMemory(load_oom_message(name, HOST, False)) from None

    return load


@functools.lru_cache(maxsize=16)
def meta_part(root: str, name: str) -> torch.nn.Module:
    """Part ``name`` built from its config on the meta device: its shapes, no weights."""
    from .. import weights

    return weights.build(name, weights.read_config(weights.component_folder(root, name)), "meta")


# --------------------------------------------------------------------------- fitting a run to the device

GIB = 2**30
# Measured by bench/device_memory.py at full size in bf16 (fused attention): the largest activations
# apart from the SDF decoder's queries (stage I with capture for the chain; stage I with guidance for
# ActionMesh mode), the bytes one decoder query holds at once (the slope in the decode chunk), and what
# lives beside the queries while a window's frames are decoded (kv caches, captured maps, one block of
# the attention capture).
OTHER_ACTIVATIONS_GIB = {"chain": 4.1, "actionmesh": 7.9}
QUERY_BYTES = 22_750
DECODE_STATE_GIB = 1.5
MIN_DECODE_CHUNK = 16_384
MARGIN_GIB = 0.5  # the allocator's own blocks, kernels' workspaces


def free_bytes(device: torch.device) -> int | None:
    """Device memory this run can use (free now plus what this process already holds); None on a CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device))
    if device.type == "mps" and hasattr(torch.mps, "recommended_max_memory"):
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return None


def held_bytes(models: Parts, compute: torch.dtype, stage0: tuple) -> tuple[int, int, int]:
    """(weights held during stage 0, weights held by the windows, the largest part) in bytes."""
    size = {n: part_bytes(n, models.spec(n), compute) for n in models}
    first = sum(v for n, v in size.items() if n in (*stage0, "vae"))
    later = sum(v for n, v in size.items() if n not in stage0)
    return first, later, max(size.values(), default=0)


def plan_memory(models: Parts, compute: torch.dtype, method: str, settings, free: int | None, stage0: tuple):
    """(settings, notes): offload on or off as ``settings.offload`` says (``auto``: on when ``free`` is
    short of what a run holding every model needs), and the decode chunk sized to the room left."""
    first, later, largest = held_bytes(models, compute, stage0)
    other = OTHER_ACTIVATIONS_GIB.get(method, max(OTHER_ACTIVATIONS_GIB.values())) * GIB
    need = max(first, later) + other + MIN_DECODE_CHUNK * QUERY_BYTES
    mode, notes = settings.offload, []
    offload = mode == "models" or (mode == "auto" and free is not None and free < need)
    models.set_offload(offload)
    if free is None:
        return settings, notes
    if offload and mode == "auto":
        notes.append(f"{free / GIB:.1f} GiB free on {models.device}, a run holding every model needs about "
                     f"{need / GIB:.1f} GiB: only the running model is kept on the device (offload; "
                     "--offload none turns it off)")
    room = free - (largest if offload else later) - (DECODE_STATE_GIB + MARGIN_GIB) * GIB
    chunk = MIN_DECODE_CHUNK
    while chunk * 2 <= settings.decode_chunk and chunk * 2 * QUERY_BYTES <= room:
        chunk *= 2
    return settings.updated(decode_chunk=min(settings.decode_chunk, chunk)), notes
