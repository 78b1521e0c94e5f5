"""The weights check: present / missing / corrupt per part, with licences (headers and configs only)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ...contracts.errors import WeightsError
from .catalogue import (
    COMPONENTS,
    EXTRA_FILES,
    LICENCES,
    RANDOM_KEY,
    Component,
    find_root,
)
from .loading import inspect_folder, read_config

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

    def summary(self) -> str:
        """One line: how many parts are missing / corrupt (the check's verdict)."""
        counts = {s: sum(p.state == s for p in self.parts) for s in ("missing", "corrupt")}
        found = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return f"{found or 'all present'} of {len(self.parts)} checks at {self.root}"

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
        _, _, header = inspect_folder(folder, comp)
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
    absent = len(COMPONENTS) - len(cfgs)
    if bad:
        return PartStatus("parts fit together", str(root), "corrupt", "-", "; ".join(bad))
    if absent:  # nothing is claimed about parts that are not there
        return PartStatus("parts fit together", str(root), "missing", "-",
                          f"not checked: {absent} of {len(COMPONENTS)} model parts missing")
    return PartStatus("parts fit together", str(root), "present", "-")


def check(root: str | os.PathLike | None = None) -> WeightsReport:
    """Present / missing / corrupt per part, with licences; reads headers and configs only (cheap)."""
    root = find_root(root)
    parts = [_component_status(root, c) for c in COMPONENTS.values()]
    parts += [_extra_status(root, repo, rel) for repo, rels in EXTRA_FILES.items() for rel in rels]
    return WeightsReport(str(root), parts + [_consistency(root)] + segment_statuses(root))


def segment_statuses(root: Path) -> list[PartStatus]:
    """The SAM 2.1 sizes: absent (optional, does not fail the check), present or corrupt."""
    from ..segment import catalogue as sam2

    out = []
    for name in sam2.MODELS:
        folder = Path(root) / name
        if not folder.exists():
            out.append(PartStatus(name, str(folder), "absent", sam2.LICENCE,
                                  f"optional, for object masks: weights download --parts {name}"))
            continue
        from ..segment.model import inspect

        try:
            _, _, header = inspect(folder)
        except WeightsError as e:
            out.append(PartStatus(name, str(folder), "corrupt", sam2.LICENCE, str(e)))
            continue
        out.append(PartStatus(name, str(folder), "present", sam2.LICENCE, is_random=RANDOM_KEY in header.metadata))
    return out
