"""A simulated accelerator: the real engine on CPU data whose tensors present themselves as a device.

No GPU is lent to most test runs, yet every real user runs on one. Here a device tensor is a wrapper
(``torch.Tensor._make_wrapper_subclass``) around a CPU tensor that claims the ``meta`` device, so
``tensor.device.type`` is not ``cpu`` and every op goes through ``__torch_dispatch__``, which runs
the CPU kernel on the unwrapped data (so fp32 results equal the CPU's) and enforces a real device's
rules:

- a host read (``.numpy()``, ``np.asarray`` / ``__array__``, ``.tolist()``) fails: data reaches the host
  only by an explicit transfer (``.cpu()``, ``.to("cpu")``), the hand-over, which is counted;
- an op mixing a device tensor with a non-scalar CPU tensor fails (as on CUDA and MPS);
- host synchronisations (``.item()``/``bool()``/``int()``, ``nonzero``, boolean-mask indexing,
  ``unique``, transfers to the host) are counted per stage (``Device.stage``);
- the ``mps`` flavour also fails on float64 on the device, int64 ``scatter_reduce`` amin/amax, unique/sort
  of keys >= 2^24, ``linalg_svd``, and device work from a second thread.

Factories called with ``device=`` and ``Tensor.to(device)`` of host tensors go through a
``TorchDispatchMode`` (entered in every thread started while the device is active); module moves swap
their parameters (``torch.__future__.set_swap_module_params_on_conversion``). The engine learns the
rules it must follow from ``engine.device.simulate`` (its ``rules(device)`` answers the flavour).
"""

from __future__ import annotations

import contextlib
import math
import threading
import traceback
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from blender_stchain.engine import device as engine_device

FAKE = torch.device("meta")
aten = torch.ops.aten
MPS_SCORE_LIMIT = 1 << 28  # MPS's SDPA builds the whole score matrix: 1 GiB of fp32 scores in one call
MPS_KEY_LIMIT = 1 << 24  # MPS sorts keys through float32 paths: larger keys lose their order

SYNC_OPS = {aten._local_scalar_dense.default: "item", aten.is_nonzero.default: "item",
            aten.nonzero.default: "nonzero", aten.masked_select.default: "masked_select",
            aten._unique2.default: "unique", aten.unique_dim.default: "unique",
            aten.unique_consecutive.default: "unique", aten.repeat_interleave.Tensor: "repeat_interleave"}
UNIQUE_OR_SORT = {aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
                  aten.sort.default, aten.sort.stable, aten.argsort.default, aten.argsort.stable}
INDEXING = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default}
MPS_MISSING = {aten._linalg_svd.default: "linalg_svd", aten.linalg_svd.default: "linalg_svd"}


class DeviceRuleError(AssertionError):
    """Something a real accelerator would refuse (or do wrongly) happened on the simulated one."""


@dataclass
class Device:
    """One simulated device: its flavour (``cuda`` or ``mps``) and what it has counted."""

    flavour: str = "cuda"
    syncs: Counter = field(default_factory=Counter)  # (stage, kind) -> count
    owner: int = field(default_factory=threading.get_ident)
    score_limit: int = MPS_SCORE_LIMIT  # attention scores one SDPA call may build on MPS
    where: Counter | None = None  # (kind, engine file:line) -> count, when set (to find the syncs)
    local: threading.local = field(default_factory=threading.local)  # each thread's own stage

    @property
    def stage(self) -> str:
        """The stage counting now, per thread (the pipeline stores a window while the next one runs)."""
        return getattr(self.local, "stage", "setup" if threading.get_ident() == self.owner else "host thread")

    def count(self, kind: str) -> None:
        self.syncs[(self.stage, kind)] += 1
        if self.where is not None:
            frames = [f for f in traceback.extract_stack() if "blender_stchain" in f.filename]
            line = f"{frames[-1].filename.split('blender_stchain/')[-1]}:{frames[-1].lineno}" if frames else "?"
            self.where[(kind, line)] += 1

    def per_stage(self) -> dict[str, int]:
        out: Counter = Counter()
        for (stage, _), n in self.syncs.items():
            out[stage] += n
        return dict(out)

    @contextlib.contextmanager
    def staged(self, name: str):
        """Counts what runs inside under ``name`` (the previous stage again afterwards)."""
        before, self.local.stage = self.stage, name
        try:
            yield
        finally:
            self.local.stage = before


_ACTIVE: list[Device] = []


def _device() -> Device:
    return _ACTIVE[-1]


class DeviceTensor(torch.Tensor):
    """A CPU tensor presenting itself as a device tensor (see the module docstring)."""

    data_: torch.Tensor

    @staticmethod
    def __new__(cls, data: torch.Tensor):
        out = torch.Tensor._make_wrapper_subclass(cls, data.shape, strides=data.stride(), dtype=data.dtype,
                                                  device=FAKE, requires_grad=data.requires_grad,
                                                  storage_offset=data.storage_offset())
        out.data_ = data
        return out

    def __repr__(self, *, tensor_contents=None):
        return f"DeviceTensor({tuple(self.shape)}, {self.dtype})"

    def numpy(self, *args, **kw):
        raise DeviceRuleError("host read of a device tensor (.numpy()): hand it over with .cpu() first")

    def __array__(self, *args, **kw):
        raise DeviceRuleError("host read of a device tensor (np.asarray): hand it over with .cpu() first")

    def tolist(self):
        raise DeviceRuleError("host read of a device tensor (.tolist()): hand it over with .cpu() first")

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dev = _device()
        _check(dev, func, args, kwargs)
        to_host = func in (aten._to_copy.default, aten.copy_.default) and _target_is_host(func, args, kwargs)
        if to_host:
            dev.count("to_host")
        elif func in SYNC_OPS and not (func is aten.repeat_interleave.Tensor and kwargs.get("output_size")):
            dev.count(SYNC_OPS[func])
        elif func in INDEXING and _bool_index(args):
            dev.count("mask_index")
        out = func(*tree_map(_unwrap, args), **tree_map(_host_device, kwargs))
        if to_host or func is aten._local_scalar_dense.default:
            return out
        if func is aten.copy_.default:
            return args[0]
        return tree_map(_wrap, out)


def _unwrap(x):
    return x.data_ if isinstance(x, DeviceTensor) else x


def _wrap(x):
    return DeviceTensor(x) if isinstance(x, torch.Tensor) and not isinstance(x, DeviceTensor) else x


def _host_device(x):
    return torch.device("cpu") if isinstance(x, torch.device) and x.type == FAKE.type else x


def _target_is_host(func, args, kwargs) -> bool:
    if func is aten.copy_.default:
        return not isinstance(args[0], DeviceTensor)
    return kwargs.get("device") is not None and torch.device(kwargs["device"]).type == "cpu"


def _bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else []
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (indices or []))


def _check(dev: Device, func, args, kwargs) -> None:
    """The rules of a real device (both flavours), and MPS's gaps."""
    flat, _ = tree_flatten((args, kwargs))
    tensors = [t for t in flat if isinstance(t, torch.Tensor)]
    if func in INDEXING and isinstance(args[0], DeviceTensor):  # host index tensors are fine on a device
        tensors = [t for t in tensors if isinstance(t, DeviceTensor) or not any(t is i for i in args[1])]
    host = [t for t in tensors if not isinstance(t, DeviceTensor) and t.dim() > 0]
    if host and func is not aten.copy_.default:
        raise DeviceRuleError(f"{func}: a device tensor mixed with a {host[0].device} tensor of shape "
                              f"{tuple(host[0].shape)}")
    if dev.flavour != "mps":
        return
    if threading.get_ident() != dev.owner:
        raise DeviceRuleError(f"{func}: device work from a second thread ({threading.current_thread().name}); "
                              "concurrent use of MPS aborts the process")
    if any(t.dtype == torch.float64 for t in tensors) or kwargs.get("dtype") == torch.float64:
        raise DeviceRuleError(f"{func}: float64 on MPS")
    if func in MPS_MISSING:
        raise DeviceRuleError(f"{func}: {MPS_MISSING[func]} is not implemented on MPS")
    reduce = args[4] if len(args) > 4 else kwargs.get("reduce")
    scatter = getattr(func, "overloadpacket", None) in (aten.scatter_reduce, aten.scatter_reduce_)
    if scatter and args[0].dtype == torch.int64 and reduce in ("amin", "amax"):
        raise DeviceRuleError(f"{func}: int64 scatter_reduce {reduce} is missing on MPS before macOS 15")
    if func in UNIQUE_OR_SORT and args[0].dtype == torch.int64 and args[0].numel() \
            and int(_unwrap(args[0]).abs().max()) >= MPS_KEY_LIMIT:
        raise DeviceRuleError(f"{func}: int64 keys >= 2^24 on MPS (wrong order / inverse indices)")


class _Factories(TorchDispatchMode):
    """Ops without a device tensor that create one (factories with ``device=``, host tensors moved to
    the device, scalars the C++ side makes on the device) run on the CPU, their results wrapped."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        target = kwargs.get("device")
        if any(isinstance(t, DeviceTensor) for t in flat) or target is None or torch.device(target) != FAKE:
            return func(*args, **kwargs)
        out = tree_map(_wrap, func(*args, **{**kwargs, "device": torch.device("cpu")}))
        _check(_device(), func, (out,), {})  # made on the device: its rules apply to the result
        return out


class _FromData(TorchFunctionMode):
    """``torch.tensor`` / ``as_tensor`` of host data with ``device=``: the C++ side copies with the
    dispatch modes off, so they are caught before it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = kwargs.get("device")
        if func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and isinstance(args[0], DeviceTensor):
            args = (args[0], _host_lists(args[1]), *args[2:])  # as the C++ side would, but keeping the data
        if func is SDPA and any(isinstance(a, DeviceTensor) for a in args):
            return _host_attention(func, args, kwargs)
        if func in FROM_DATA and target is not None and torch.device(target) == FAKE:
            data = func(*args, **{k: v for k, v in kwargs.items() if k != "device"})
            return data if isinstance(data, DeviceTensor) else DeviceTensor(data)
        return func(*args, **kwargs)


def _host_lists(index):
    """Python lists in an index as host index tensors (a device takes those)."""
    if isinstance(index, tuple):
        return tuple(_host_lists(i) for i in index)
    return torch.tensor(index) if isinstance(index, list) else index


def _host_attention(func, args, kwargs):
    """SDPA with the CPU's own kernel on the data: as a composite op it would otherwise pick its path
    by the device type claimed (the math path instead of the CPU's fused one, ulps apart)."""
    dev = _device()
    _check(dev, func, args, kwargs)
    q, k = args[0], args[1]
    if dev.flavour == "mps" and math.prod(q.shape[:-1]) * k.shape[-2] > dev.score_limit:
        raise DeviceRuleError(f"SDPA of {tuple(q.shape)} x {tuple(k.shape)} on MPS: the whole score matrix at once")
    return tree_map(_wrap, func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs)))


SDPA = torch._C._nn.scaled_dot_product_attention
FROM_DATA = (torch.tensor, torch.as_tensor, torch.asarray)


@contextlib.contextmanager
def _modes():
    with _FromData(), _Factories():
        yield


@contextlib.contextmanager
def simulated(flavour: str = "cuda"):
    """The simulated device for the block: yields its ``Device`` (counters, ``staged``)."""
    dev = Device(flavour)
    _ACTIVE.append(dev)
    start = threading.Thread.run

    def run_in_mode(thread):  # a thread started in the block (the pipeline's host thread) sees the device too
        with _modes():
            start(thread)

    swap = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    threading.Thread.run = run_in_mode
    try:
        with _modes(), engine_device.simulate(FAKE, flavour):
            yield dev
    finally:
        threading.Thread.run = start
        torch.__future__.set_swap_module_params_on_conversion(swap)
        _ACTIVE.remove(dev)


def on_device(x: torch.Tensor) -> DeviceTensor:
    return DeviceTensor(x.detach().clone())
