"""Official checkpoint layouts, strict loading, and the weights check.

A weights root holds the three official Hugging Face repositories, unchanged::

    ROOT/
      TripoSG/         (VAST-AI/TripoSG, MIT)
        model_index.json
        transformer/{config.json, diffusion_pytorch_model.safetensors}
        vae/{config.json, diffusion_pytorch_model.safetensors}
        scheduler/scheduler_config.json
        image_encoder_dinov2/{config.json, model.safetensors}
        feature_extractor_dinov2/preprocessor_config.json
      ActionMesh/      (facebook/ActionMesh, FAIR Noncommercial Research License v1)
        denoiser/{config.json, model.safetensors}
        autoencoder/{config.json, model.safetensors}
      dinov2-large/    (facebook/dinov2-large, Apache-2.0)
        config.json  model.safetensors  preprocessor_config.json

The root is the explicit argument, else ``$STCHAIN_WEIGHTS``, else ``default_root()``. Loading is strict:
every key and shape must match the model built from the folder's own config.json, and any mismatch is one
``WeightsError`` naming folder, file and keys. Only safetensors are read (see ``safetensors_io``).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import WeightsError
from .safetensors_io import PICKLE_SUFFIXES, identity, load_tensors, read_header

LICENCES = {
    "TripoSG": "MIT (VAST-AI/TripoSG)",
    "ActionMesh": "FAIR Noncommercial Research License v1 (non-commercial use only)",
    "dinov2-large": "Apache-2.0 (facebook/dinov2-large)",
}
REPOS = {"TripoSG": "VAST-AI/TripoSG", "ActionMesh": "facebook/ActionMesh", "dinov2-large": "facebook/dinov2-large"}
RANDOM_KEY = "stchain_random"  # safetensors metadata key set by make-random: output is a smoke test


@dataclass(frozen=True)
class Component:
    """One loadable model folder of an official repository."""

    name: str
    repo_dir: str  # folder under the weights root (a key of REPOS)
    subdir: str  # folder inside the repository ("" = repository root)
    weights_file: str
    builder: str  # "module:Class" under blender_stchain.engine.models, built with Class.from_config(cfg)
    title: str
    licence_note: str = ""  # overrides the repository licence where the part's own licence differs

    @property
    def licence(self) -> str:
        return self.licence_note or LICENCES[self.repo_dir]

    @property
    def relpath(self) -> str:
        return f"{self.repo_dir}/{self.subdir}".rstrip("/")


COMPONENTS = {c.name: c for c in (
    Component("transformer", "TripoSG", "transformer", "diffusion_pytorch_model.safetensors",
              "triposg_dit:TripoSGDiT", "TripoSG DiT"),
    Component("vae", "TripoSG", "vae", "diffusion_pytorch_model.safetensors",
              "triposg_vae:TripoSGVAE", "TripoSG VAE"),
    Component("image_encoder_dinov2", "TripoSG", "image_encoder_dinov2", "model.safetensors",
              "dinov2:Dinov2Model", "DINOv2 image encoder (TripoSG copy)",
              "Apache-2.0 (DINOv2 weights, shipped in VAST-AI/TripoSG)"),
    Component("denoiser", "ActionMesh", "denoiser", "model.safetensors",
              "actionmesh_denoiser:ActionMeshDenoiser", "ActionMesh denoiser"),
    Component("autoencoder", "ActionMesh", "autoencoder", "model.safetensors",
              "actionmesh_autoencoder:ActionMeshAutoencoder", "ActionMesh autoencoder"),
    Component("dinov2", "dinov2-large", "", "model.safetensors", "dinov2:Dinov2Model", "DINOv2-L image encoder"),
)}
# Plain files of each repository that are not model folders (configs the pipeline reads).
EXTRA_FILES = {
    "TripoSG": ["model_index.json", "scheduler/scheduler_config.json",
                "feature_extractor_dinov2/preprocessor_config.json"],
    "ActionMesh": [],
    "dinov2-large": ["preprocessor_config.json"],
}


def repo_files(repo_dir: str) -> list[str]:
    """Every file of ``repo_dir`` the pipeline needs, relative to the repository root."""
    files = list(EXTRA_FILES[repo_dir])
    for c in COMPONENTS.values():
        if c.repo_dir == repo_dir:
            prefix = f"{c.subdir}/" if c.subdir else ""
            files += [prefix + "config.json", prefix + c.weights_file]
    return files


# --------------------------------------------------------------------------- root discovery

def default_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.environ.get("LOCALAPPDATA") or Path.home() / ".cache"
    return Path(base) / "blender_stchain" / "weights"


def find_root(explicit: str | os.PathLike | None = None) -> Path:
    """Explicit argument > ``$STCHAIN_WEIGHTS`` > the default user folder."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("STCHAIN_WEIGHTS")
    return Path(env).expanduser() if env else default_root()


def component_folder(root_or_folder: str | os.PathLike, name: str) -> Path:
    """Resolve ``name``'s folder: ROOT/<repo>/<sub>, ROOT/<sub>, or the folder itself."""
    comp = _component(name)
    base = Path(root_or_folder).expanduser()
    candidates = [base / comp.relpath, base / comp.subdir, base] if comp.subdir else [base / comp.relpath, base]
    for folder in candidates:
        if (folder / "config.json").is_file():
            return folder
    return candidates[0]


def _component(name: str) -> Component:
    if name not in COMPONENTS:
        raise WeightsError(f"unknown model part {name!r}; choose one of {', '.join(COMPONENTS)}")
    return COMPONENTS[name]


# --------------------------------------------------------------------------- recognising a folder's model

def _kind_from_config(cfg: dict) -> str | None:
    cls = str(cfg.get("_class_name", ""))
    if cls == "TripoSGDiTModel":
        return "transformer"
    if cls in ("TripoSGVAEModel", "Tripo2VAEModel"):
        return "vae"
    if cfg.get("model_type") == "dinov2":
        return "dinov2"
    if "inflated_layers" in cfg:
        return "denoiser"
    if "prediction_mode" in cfg or "in_extra_channels" in cfg:
        return "autoencoder"
    if "RectifiedFlow" in cls or "num_train_timesteps" in cfg:
        return "scheduler"
    if "image_processor_type" in cfg or "crop_size" in cfg:
        return "image preprocessor"
    return None


def _kind_from_keys(keys) -> str | None:
    keys = set(keys)
    if "embeddings.patch_embeddings.projection.weight" in keys:
        return "dinov2"
    if "decoder.proj_query.weight" in keys or "encoder.proj_in.weight" in keys:
        return "vae"
    if "proj_query.weight" in keys:
        return "autoencoder"
    if "blocks.0.attn1.to_q.weight" in keys:
        return "transformer"
    if "blocks.0.s_attn.to_q.weight" in keys:
        return "denoiser"
    return None


_KIND_TITLES = {c.name: c.title for c in COMPONENTS.values()} | {"dinov2": "DINOv2 image encoder"}


def _same_kind(expected: str, found: str) -> bool:
    dino = {"dinov2", "image_encoder_dinov2"}
    return found == expected or (found in dino and expected in dino)


def _wrong_model(folder: Path, comp: Component, found: str | None, what: str) -> None:
    if found is not None and not _same_kind(comp.name, found):
        title = _KIND_TITLES.get(found, found)
        raise WeightsError(f"{folder}: {what} contains the {title} ({found}), not the {comp.title} ({comp.name}); "
                           "wrong checkpoint in this folder")


# --------------------------------------------------------------------------- building and strict loading

def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise WeightsError(f"{folder}: missing file config.json")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WeightsError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise WeightsError(f"{path}: expected a JSON object")
    return cfg


def _weights_path(folder: Path, comp: Component) -> Path:
    path = folder / comp.weights_file
    if path.is_file():
        return path
    pickles = sorted(p.name for p in folder.glob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise WeightsError(f"{folder}: only a pickle checkpoint ({pickles[0]}) is here; it is refused because "
                           f"loading it can execute code; download the official {comp.weights_file}")
    raise WeightsError(f"{folder}: missing file {comp.weights_file}")


def build(name: str, cfg: dict, device="cpu"):
    """Construct ``name``'s model from an official config dict (on ``device``; "meta" allocates nothing)."""
    import torch

    module, cls = _component(name).builder.split(":")
    model_cls = getattr(importlib.import_module(f"blender_stchain.engine.models.{module}"), cls)
    with torch.device(device):
        return model_cls.from_config(cfg)


def _list(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def verify_keys(path: Path, expected: dict, stored: dict) -> None:
    """One error listing missing, unexpected and mis-shaped keys (first few of each + counts)."""
    missing = expected.keys() - stored.keys()
    unexpected = stored.keys() - expected.keys()
    shaped = [f"{k} {tuple(stored[k])} != {tuple(expected[k])}" for k in sorted(expected.keys() & stored.keys())
              if tuple(stored[k]) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_list(unexpected)}")
    if shaped:
        problems.append(f"{len(shaped)} mis-shaped key(s): {'; '.join(shaped[:3])}")
    if problems:
        raise WeightsError(f"{path}: does not match its config.json: " + "; ".join(problems))


def _inspect(folder: Path, comp: Component):
    """Validate config, header and key set of a component folder without loading tensor data."""
    cfg = read_config(folder)
    _wrong_model(folder, comp, _kind_from_config(cfg), "config.json")
    path = _weights_path(folder, comp)
    header = read_header(path)
    _wrong_model(folder, comp, _kind_from_keys(header.tensors), path.name)
    try:
        meta = build(comp.name, cfg, "meta")
    except WeightsError:
        raise
    except Exception as e:  # a config the model class cannot build from
        raise WeightsError(f"{folder / 'config.json'}: cannot build the {comp.title} ({type(e).__name__}: {e})") from None
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    verify_keys(path, expected, {k: i.shape for k, i in header.tensors.items()})
    return cfg, path, header


def load_component(root_or_folder: str | os.PathLike, name: str, device="cpu", dtype=None):
    """Build ``name`` from its folder's config.json and load its safetensors strictly; returns an eval module.

    Built on the meta device and filled by assignment, so a full-size model is never allocated twice.
    ``dtype`` (default float32) applies to floating-point tensors.
    """
    import torch

    comp = _component(name)
    folder = component_folder(root_or_folder, name)
    if not folder.is_dir():
        raise WeightsError(f"{folder}: missing folder for the {comp.title}; run `python -m blender_stchain "
                           "weights download` or pass the weights folder")
    cfg, path, _ = _inspect(folder, comp)
    dtype = dtype or torch.float32
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v)
               for k, v in load_tensors(path, device=str(device)).items()}
    model = build(name, cfg, "meta")
    model.load_state_dict(tensors, strict=True, assign=True)
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        model = build(name, cfg, device)  # a module with computed buffers: build for real
        model.load_state_dict(tensors, strict=True)
    return model.eval()


def weight_identity(root_or_folder: str | os.PathLike, name: str) -> dict:
    """For result metadata: part, file, sha256(header + size), licence, smoke-test flag."""
    comp = _component(name)
    path = component_folder(root_or_folder, name) / comp.weights_file
    header = read_header(path)
    return {"part": name, "repo": REPOS[comp.repo_dir], "file": str(path), "sha256_header": identity(path),
            "licence": comp.licence, "random": RANDOM_KEY in header.metadata}


# --------------------------------------------------------------------------- check

@dataclass(frozen=True)
class PartStatus:
    name: str
    folder: str
    state: str  # "present" | "missing" | "corrupt"
    licence: str
    detail: str = ""
    is_random: bool = False


@dataclass(frozen=True)
class WeightsReport:
    root: str
    parts: list[PartStatus] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(p.state in ("present", "absent") for p in self.parts)  # absent: optional (SAM 2.1 sizes)

    @property
    def is_random(self) -> bool:
        return any(p.is_random for p in self.parts)

    def lines(self) -> list[str]:
        out = [f"weights root: {self.root}"]
        for p in self.parts:
            flag = " [RANDOM: smoke test only]" if p.is_random else ""
            detail = f" - {p.detail}" if p.detail else ""
            out.append(f"  {p.state:<8} {p.name}  [{p.licence}]{flag}{detail}")
        return out


def _extra_status(root: Path, repo_dir: str, rel: str) -> PartStatus:
    path = root / repo_dir / rel
    lic = LICENCES[repo_dir]
    name = f"{repo_dir}/{rel}"
    if not path.is_file():
        return PartStatus(name, str(path.parent), "missing", lic, f"missing file {path.name}")
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return PartStatus(name, str(path.parent), "corrupt", lic, f"unreadable JSON ({e})")
    return PartStatus(name, str(path.parent), "present", lic)


def _component_status(root: Path, comp: Component) -> PartStatus:
    folder = root / comp.relpath
    lic = comp.licence
    if not (folder / "config.json").exists() and not (folder / comp.weights_file).exists():
        return PartStatus(comp.name, str(folder), "missing", lic, "folder or files missing")
    try:
        _, _, header = _inspect(folder, comp)
    except WeightsError as e:
        missing = "missing file" in str(e)
        return PartStatus(comp.name, str(folder), "missing" if missing else "corrupt", lic, str(e))
    return PartStatus(comp.name, str(folder), "present", lic, is_random=RANDOM_KEY in header.metadata)


# (consumer part, its config key) must equal (producer part, its config key): the parts plug together.
_INTERFACES = [
    ("transformer", "cross_attention_dim", "image_encoder_dinov2", "hidden_size"),
    ("denoiser", "cross_attention_dim", "dinov2", "hidden_size"),
    ("transformer", "in_channels", "vae", "latent_channels"),
    ("denoiser", "in_channels", "vae", "latent_channels"),
    ("autoencoder", "latent_channels", "denoiser", "in_channels"),
]


def _consistency(root: Path) -> PartStatus:
    """Parts whose interfaces disagree (e.g. a small random DINOv2 beside full transformers) cannot run."""
    cfgs = {}
    for comp in COMPONENTS.values():
        try:
            cfgs[comp.name] = read_config(root / comp.relpath)
        except WeightsError:
            continue
    bad = [f"{a}.{ka}={cfgs[a].get(ka)} != {b}.{kb}={cfgs[b].get(kb)}" for a, ka, b, kb in _INTERFACES
           if a in cfgs and b in cfgs and cfgs[a].get(ka) != cfgs[b].get(kb)]
    state = "corrupt" if bad else "present"
    return PartStatus("parts fit together", str(root), state, "-", "; ".join(bad))


def check(root: str | os.PathLike | None = None) -> WeightsReport:
    """Present / missing / corrupt per part, with licences; reads headers and configs only (cheap)."""
    root = find_root(root)
    parts = [_component_status(root, c) for c in COMPONENTS.values()]
    parts += [_extra_status(root, repo, rel) for repo, rels in EXTRA_FILES.items() for rel in rels]
    from .segment.model import statuses as segment_statuses  # SAM 2.1 sizes, optional (issue 12)

    return WeightsReport(str(root), parts + [_consistency(root)] + segment_statuses(root))


def download(root=None, parts=None, progress=None, cancel=None, base_url: str | None = None):
    """Fetch the official repositories (see ``weights_download.download``)."""
    from .weights_download import download as _download

    return _download(find_root(root), parts, progress, cancel, base_url)
