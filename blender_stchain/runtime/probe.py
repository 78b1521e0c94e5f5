"""Run as ``python -I probe.py SITE DEVICE PACKAGE_PARENT`` (never imported by the extension): the verification of
one runtime in a fresh interpreter that sees that runtime alone (``-I``: no user site, no PYTHONPATH;
the interpreter's own packages, such as Blender's numpy, stay). Prints one JSON report; exit 0 when
torch came from SITE, the device is visible, and a matmul and an attention call on the device agree
with the CPU in the dtype a run would use there.
"""

import importlib.util
import json
import os
import sys
import time

# error allowed relative to the largest reference value, per dtype the run would use
TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 5e-3}


def fail(report: dict, message: str) -> int:
    print(json.dumps({**report, "ok": False, "error": message}))
    return 1


def relative_error(got, ref) -> float:
    scale = float(ref.abs().max()) or 1.0
    return float((got.double().cpu() - ref.double()).abs().max()) / scale


def on_device(torch, device: str) -> tuple[object, str, str]:
    """(torch device, its name, the dtype a run uses there: the engine's automatic precision)."""
    if device == "cpu":
        return torch.device("cpu"), "CPU", "float32"
    if not torch.cuda.is_available():
        built = torch.version.cuda or getattr(torch.version, "hip", None) or "no GPU"
        raise RuntimeError(f"torch {torch.__version__} (built for {built}) sees no GPU: update the driver "
                           "or plan again")
    dev = torch.device("cuda", 0)
    torch.backends.cuda.matmul.allow_tf32 = False  # the comparison is against full fp32
    dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return dev, torch.cuda.get_device_name(0), dtype


def kernels(torch, dev, dtype_name: str) -> dict:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 256, generator=gen), torch.randn(256, 256, generator=gen)
    matmul = relative_error(a.to(dev) @ b.to(dev), a.double() @ b.double())
    q, k, v = (torch.randn(1, 4, 128, 64, generator=gen) for _ in range(3))
    ref = torch.softmax((q.double() @ k.double().transpose(-1, -2)) / 8.0, dim=-1) @ v.double()
    dtype = getattr(torch, dtype_name)
    got = torch.nn.functional.scaled_dot_product_attention(*(t.to(dev, dtype) for t in (q, k, v)))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return {"matmul_error": matmul, "attention_error": relative_error(got.float(), ref)}


def main(argv) -> int:
    site, device, package_parent = os.path.abspath(argv[0]), argv[1], argv[2]
    sys.path[:0] = [site, package_parent]  # the package is torch-free: it only opens the runtime's DLL folders
    store = importlib.import_module(f"{os.path.basename(os.path.dirname(os.path.dirname(__file__)))}.runtime.store")
    store.enter([site], marker=False)  # as the worker does
    report = {"site": site, "device": device}
    spec = importlib.util.find_spec("torch")
    if spec is None or not os.path.abspath(spec.origin or "").startswith(site + os.sep):
        return fail(report, f"torch is not in the runtime (found {spec and spec.origin})")
    start = time.perf_counter()
    try:
        import torch

        report.update(torch=torch.__version__, import_s=round(time.perf_counter() - start, 2))
        dev, name, dtype = on_device(torch, device)
        report.update(device_name=name, dtype=dtype, **kernels(torch, dev, dtype))
    except Exception as e:  # noqa: BLE001 - every failure is the report's one line
        return fail(report, f"{type(e).__name__}: {e}".splitlines()[0])
    bad = [k for k in ("matmul_error", "attention_error") if not report[k] <= TOLERANCE[dtype if k[0] == "a" else "float32"]]
    if bad:
        return fail(report, f"{bad[0].replace('_', ' ')} {report[bad[0]]:.2g} on {name} is over the tolerance")
    print(json.dumps({**report, "ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
