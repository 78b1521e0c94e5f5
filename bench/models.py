"""Forward time and peak memory of each backbone model per size, random weights, JSON to stdout.

    python bench/models.py [--device auto|cpu|cuda[:n]|mps] [--precision auto|fp32|bf16|fp16]
                           [--sizes tiny,small,full] [--repeats 3]

Inputs follow the pipeline's shapes: CFG batch 2 for the DiT and the ActionMesh-mode denoiser, batch 1
for the chain's denoiser (no guidance; 16-frame window at small/full), one VAE decode of a query chunk, one stage-II target pass. Memory is the CUDA peak
allocation on GPUs; on CPU it is the process's peak RSS so far (monotonic, sizes run small to large).
``full`` is skipped on CPU (minutes per forward and ~6 GB of weights): run it on a GPU machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_stchain.engine.device import runtime  # noqa: E402
from blender_stchain.engine.models.actionmesh_autoencoder import ActionMeshAutoencoder  # noqa: E402
from blender_stchain.engine.models.actionmesh_denoiser import ActionMeshDenoiser  # noqa: E402
from blender_stchain.engine.models.configs import config  # noqa: E402
from blender_stchain.engine.models.triposg_dit import TripoSGDiT  # noqa: E402
from blender_stchain.engine.models.triposg_vae import TripoSGVAE  # noqa: E402

TOKENS = {"tiny": 32, "small": 128, "full": 2048}  # latent tokens per frame
FRAMES = {"tiny": 4, "small": 16, "full": 16}
QUERIES = {"tiny": 4096, "small": 16384, "full": 50000}  # one VAE decode chunk
VERTICES = {"tiny": 500, "small": 5000, "full": 20000}
CONTEXT = 257  # DINO tokens per image


def cases(size: str, dev: torch.device):
    n, t = TOKENS[size], FRAMES[size]

    def rnd(*shape):
        return torch.randn(*shape, device=dev)

    dit = config("transformer", size)
    yield "transformer", TripoSGDiT, lambda m: m(rnd(2, n, dit["in_channels"]), torch.full((2,), 500.0, device=dev),
                                                 rnd(2, CONTEXT, dit["cross_attention_dim"]))
    den = config("denoiser", size)
    for name, b in (("denoiser", 2), ("denoiser_chain", 1)):  # CFG batch (ActionMesh mode); the chain's batch 1
        yield name, ActionMeshDenoiser, functools.partial(_denoiser_call, rnd=rnd, b=b, t=t, n=n, cfg=den, dev=dev)
    vae = config("vae", size)
    yield "vae_decode", TripoSGVAE, lambda m: m.decode(rnd(1, n, vae["latent_channels"]),
                                                       torch.rand(1, QUERIES[size], 3, device=dev) * 2 - 1)
    ae = config("autoencoder", size)
    yield "autoencoder", ActionMeshAutoencoder, lambda m: m(
        rnd(1, t, n, ae["latent_channels"]), torch.arange(t, device=dev, dtype=torch.float32)[None],
        torch.zeros(1, device=dev), torch.ones(1, 1, device=dev), rnd(1, VERTICES[size], 6))


def _denoiser_call(m, rnd, b, t, n, cfg, dev):
    mask = torch.zeros(b, t, device=dev)
    mask[:, 0] = 1
    return m(rnd(b, t, n, cfg["in_channels"]), rnd(b, t, CONTEXT, cfg["cross_attention_dim"]),
             torch.arange(t, device=dev, dtype=torch.float32).expand(b, t), torch.full((b,), 500.0, device=dev), mask)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(cls, component, size, call, rt, repeats):
    dev = rt.device
    with torch.device(dev):
        model = cls.from_config(config(component, size)).eval()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    with torch.no_grad(), rt.autocast():
        for i in range(repeats + 1):  # the first run warms up
            sync(dev)
            start = time.perf_counter()
            call(model)
            sync(dev)
            if i:
                times.append(time.perf_counter() - start)
    if dev.type == "cuda":
        mem = {"peak_cuda_mb": torch.cuda.max_memory_allocated(dev) / 2**20}
    else:
        mem = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    params = sum(p.numel() for p in model.parameters())
    del model
    return {"forward_s": statistics.median(times), "parameters": params, **mem}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--sizes", default="tiny,small,full")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    rt = runtime(args.device, args.precision)
    torch.manual_seed(0)
    report = {"device": str(rt.device), "dtype": str(rt.dtype).replace("torch.", ""),
              "torch": torch.__version__, "results": []}
    if rt.device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(rt.device)
    for size in args.sizes.split(","):
        for component, cls, call in cases(size, rt.device):
            entry = {"model": component, "size": size}
            if size == "full" and rt.device.type == "cpu":
                entry["skipped"] = "full size is not run on CPU (minutes per forward); use a GPU machine"
                print(f"skip {component}/{size}: {entry['skipped']}", file=sys.stderr)
            else:
                entry.update(measure(cls, component.split("_")[0], size, call, rt, args.repeats))
                print(f"{component}/{size}: {entry['forward_s']:.4f} s", file=sys.stderr)
            report["results"].append(entry)
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
