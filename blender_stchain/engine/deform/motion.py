"""Dense motion from sparse landmark tracks (docs/architecture.md 5.6).

Landmarks are farthest-point samples of the anchor vertices. Their tracked positions are smoothed
over time with confidence weights; each landmark gets a rigid transform per frame from a weighted
Procrustes fit over its geodesic neighbourhood of landmarks; every vertex then moves by the
geodesic-Gaussian blend of its nearest landmarks' transforms applied to its anchor position. Only
rigid pieces move the surface, so the anchor's detail is kept. Geodesics are graph distances
over the anchor's edges, computed once, and only to each vertex's nearest landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from ...contracts.settings import Settings

_EPS = 1e-12
_FILLED_WEIGHT = 1e-3  # skin weight of a transform borrowed from another frame/landmark


@dataclass(frozen=True)
class DeformSettings:
    """The dense-motion subset of ``Settings`` (same names and defaults)."""

    min_confidence: float = Settings.min_confidence
    smooth_sigma: float = Settings.smooth_sigma
    skin_sigma: float = Settings.skin_sigma
    procrustes_neighbours: int = Settings.procrustes_neighbours
    skin_neighbours: int = Settings.skin_neighbours  # the next landmark sets the weight cutoff

    @classmethod
    def from_kwargs(cls, **settings) -> DeformSettings:
        """Picks this module's settings; other pipeline settings are accepted and ignored."""
        known = {f.name for f in fields(Settings)} | {f.name for f in fields(cls)}
        unknown = set(settings) - known
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return cls(**{f.name: settings[f.name] for f in fields(cls) if f.name in settings})


def farthest_point_landmarks(vertices, count: int = Settings.landmarks) -> np.ndarray:
    """Indices of ``count`` farthest-point samples, starting from the vertex farthest from the centroid."""
    pts = np.asarray(vertices, dtype=np.float64)
    count = min(count, pts.shape[0])
    ids = np.empty(count, dtype=np.int64)
    ids[0] = np.argmax(np.linalg.norm(pts - pts.mean(axis=0), axis=1))
    nearest = np.linalg.norm(pts - pts[ids[0]], axis=1)
    for i in range(1, count):
        ids[i] = np.argmax(nearest)
        np.minimum(nearest, np.linalg.norm(pts - pts[ids[i]], axis=1), out=nearest)
    return ids


def propagate(anchor_vertices, faces, landmark_ids, landmark_positions, confidence, **settings) -> np.ndarray:
    """Vertices per frame (T, Nv, 3) float32 from landmark tracks (T, L, 3) with confidence (T, L).

    The public contract (docs/architecture.md 3); a run with many windows calls ``Skinning.prepare`` once per anchor and
    ``Skinning.move`` per window instead (same numbers: this is exactly those two calls)."""
    return Skinning.prepare(anchor_vertices, faces, landmark_ids, **settings).move(landmark_positions, confidence)


@dataclass(frozen=True)
class Skinning:
    """What dense motion needs that depends only on the anchor: geodesic neighbourhoods, skin weights.

    Computing it is the costly part (geodesics: seconds on a 20k-vertex mesh); moving a window of
    frames is then a few batched tensor ops on ``device``."""

    cfg: DeformSettings
    vertices: torch.Tensor  # (Nv, 3) anchor positions
    landmark_ids: torch.Tensor  # (L,)
    fit_neighbours: torch.Tensor  # (L, procrustes_neighbours) landmark indices, column 0 = itself
    fill_neighbours: torch.Tensor  # (L, k) nearest landmarks of each landmark, for borrowed transforms
    skin_weights: torch.Tensor  # (Nv, skin_neighbours) unnormalised geodesic-Gaussian weights
    skin_sources: torch.Tensor  # (Nv, skin_neighbours) landmark index of each weight (clamped >= 0)

    @classmethod
    def prepare(cls, anchor_vertices, faces, landmark_ids, device="cpu", **settings) -> Skinning:
        cfg = DeformSettings.from_kwargs(**settings)
        X = torch.as_tensor(np.asarray(anchor_vertices), dtype=torch.float64)
        ids = torch.as_tensor(np.asarray(landmark_ids), dtype=torch.long)
        _check_anchor(X, ids)
        diag = float((X.max(0).values - X.min(0).values).norm())
        k_table = max(cfg.procrustes_neighbours, cfg.skin_neighbours + 1)
        dist, src = (torch.from_numpy(a) for a in nearest_landmarks(X.numpy(), np.asarray(faces), ids.numpy(), k_table))
        k = cfg.skin_neighbours
        weights, sources = skin_weights(dist[:, : k + 1], src[:, : k + 1], max(cfg.skin_sigma * diag, _EPS))
        dtype = _dtype(device)
        return cls(cfg, X.to(device, dtype), ids.to(device), src[ids, : cfg.procrustes_neighbours].to(device),
                   src[ids].to(device), weights.to(device, dtype), sources.to(device))

    @property
    def device(self) -> torch.device:
        return self.vertices.device

    def move(self, landmark_positions, confidence) -> np.ndarray:
        """Vertices per frame (T, Nv, 3) float32 from landmark tracks (T, L, 3) with confidence (T, L)."""
        return self.motion(landmark_positions, confidence).vertices()

    def motion(self, landmark_positions, confidence) -> Motion:
        """The landmarks' rigid transforms per frame (cheap: landmarks only); ``Motion.vertices`` skins
        the vertices of any frames, so a pipeline can skin the frame it needs now and the rest later."""
        dtype, dev = self.vertices.dtype, self.device
        P, C = _tracks_on(landmark_positions, dev, dtype), _tracks_on(confidence, dev, dtype)
        _check_tracks(P, C, self.landmark_ids.shape[0])
        C = torch.where(C >= self.cfg.min_confidence, C, torch.zeros_like(C))
        P, C = smooth_tracks(P, C, self.cfg.smooth_sigma)
        R, t, valid = local_rigid_fits(self.vertices[self.landmark_ids], P, C, self.fit_neighbours)
        R, t = fill_invalid(R, t, valid, self.fill_neighbours)
        return Motion(self, R, t, valid)


@dataclass(frozen=True)
class Motion:
    """One window's landmark transforms (smoothed over its frames, gaps filled); the vertices of its
    frames on demand. A frame's vertices depend on its own transforms only."""

    skinning: Skinning
    R: torch.Tensor  # (T, L, 3, 3)
    t: torch.Tensor  # (T, L, 3)
    valid: torch.Tensor  # (T, L) the transform was fitted, not borrowed

    def __len__(self) -> int:
        return self.R.shape[0]

    def vertices(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Vertices (stop - start, Nv, 3) float32 of frames ``start:stop``."""
        s, frames = self.skinning, slice(start, stop)
        return skin(s.vertices, s.skin_weights, s.skin_sources, self.R[frames], self.t[frames], self.valid[frames])


def _tracks_on(x, device, dtype) -> torch.Tensor:
    """Tracks (arrays, or tensors on any device) as ``dtype`` on the skinning's device. Moved before
    the cast: when the skinning is on the host (no float64 on the device), this copy is the window's
    one hand-over of its tracks, and no float64 is made on the device."""
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return x.to(device).to(dtype)


def _dtype(device) -> torch.dtype:
    """float64 where the device has it (the Procrustes fits of nearly flat neighbourhoods need it)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def _check_anchor(X, ids) -> None:
    if ids.ndim != 1 or X.ndim != 2 or X.shape[1] != 3:
        raise ValueError(f"propagate shapes disagree: anchor {tuple(X.shape)}, landmark_ids {tuple(ids.shape)}")
    if ids.shape[0] < 3:
        raise ValueError(f"propagate needs at least 3 landmarks, got {ids.shape[0]}")
    if ids.unique().numel() != ids.shape[0] or ids.min() < 0 or ids.max() >= X.shape[0]:
        raise ValueError("landmark_ids must be distinct anchor vertex indices")


def _check_tracks(P, C, L: int) -> None:
    if C.ndim != 2 or C.shape[1] != L or P.shape != (C.shape[0], L, 3):
        raise ValueError(f"propagate shapes disagree: {L} landmark_ids, positions {tuple(P.shape)}, "
                         f"confidence {tuple(C.shape)}")


# ------------------------------------------------------------------------ geodesics


def nearest_landmarks(X, faces, ids, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Graph-geodesic distances (Nv, k) and indices (Nv, k) of each vertex's k nearest landmarks.

    Bellman-Ford on the edge graph keeping the k best distinct sources per vertex: exact, since a
    source among a vertex's k nearest is among the k nearest of its predecessor on the shortest
    path. Only vertices next to a change are relaxed again, so the work grows with the hop
    distance to the k-th landmark, not with the mesh diameter. Vertices whose component holds
    fewer than k landmarks use Euclidean distances instead. numpy: its row sorts are much faster
    than torch's on CPU, and this runs once per anchor.
    """
    X, ids = np.asarray(X, dtype=np.float64), np.asarray(ids)
    nbr, w = _adjacency(X, np.asarray(faces))
    Nv, k = X.shape[0], min(k, ids.shape[0])
    dist = np.full((Nv, k), np.inf)
    src = np.full((Nv, k), -1, dtype=np.int64)
    dist[ids, 0] = 0.0
    src[ids, 0] = np.arange(ids.shape[0])
    active = np.unique(nbr[ids])
    while active.size:
        nb = nbr[active]
        cand_d = np.concatenate([dist[active], (dist[nb] + w[active, :, None]).reshape(active.size, -1)], axis=1)
        cand_s = np.concatenate([src[active], src[nb].reshape(active.size, -1)], axis=1)
        new_d, new_s = _k_best_distinct(cand_d, cand_s, k)
        # only real shortening counts: not ties swapping sources, nor packing round-off
        tol = 1e-9 * (1.0 + np.where(np.isfinite(new_d), new_d, 0.0))
        changed = active[(new_d + tol < dist[active]).any(axis=1)]
        dist[active], src[active] = new_d, new_s
        active = np.unique(nbr[changed])
    short = np.isinf(dist[:, -1])
    if short.any():
        eu = np.linalg.norm(X[short][:, None] - X[ids][None], axis=2)
        src[short] = np.argsort(eu, axis=1)[:, :k]
        dist[short] = np.take_along_axis(eu, src[short], axis=1)
    return dist, src


def _adjacency(X, faces) -> tuple[np.ndarray, np.ndarray]:
    """Padded neighbour table (Nv, D) and edge lengths (Nv, D); padding points to self at inf."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    e = np.unique(np.concatenate([e, e[:, ::-1]]), axis=0)
    e = e[e[:, 0] != e[:, 1]]
    Nv = X.shape[0]
    counts = np.bincount(e[:, 0], minlength=Nv)
    slot = np.arange(e.shape[0]) - (np.cumsum(counts) - counts)[e[:, 0]]
    nbr = np.repeat(np.arange(Nv)[:, None], max(int(counts.max(initial=0)), 1), axis=1)
    w = np.full(nbr.shape, np.inf)
    nbr[e[:, 0], slot] = e[:, 1]
    w[e[:, 0], slot] = np.linalg.norm(X[e[:, 0]] - X[e[:, 1]], axis=1)
    return nbr, w


def _k_best_distinct(d, s, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k smallest distances with distinct sources (source -1 = empty).

    Source and distance are packed into one float, ``source + d / (1 + d)``, so a single value
    sort groups each source's entries nearest first (float64 keeps d to ~1e-12).
    """
    empty = float(2**40)  # sorts after every real source, keeps the arithmetic finite
    finite = np.isfinite(d) & (s >= 0)
    d = np.where(finite, d, 0.0)
    key = np.sort(np.where(finite, s + d / (1.0 + d), empty), axis=1)
    s = np.floor(key)
    frac = key - s
    d = np.where(s < empty, frac / (1.0 - frac), np.inf)
    d[:, 1:][s[:, 1:] == s[:, :-1]] = np.inf
    pick = np.argpartition(d, k - 1, axis=1)[:, :k] if d.shape[1] > k else np.argsort(d, axis=1)
    pick = np.take_along_axis(pick, np.argsort(np.take_along_axis(d, pick, axis=1), axis=1), axis=1)
    best_d = np.take_along_axis(d, pick, axis=1)
    best_s = np.where(np.isinf(best_d), -1, np.take_along_axis(s, pick, axis=1)).astype(np.int64)
    return best_d, best_s


# ------------------------------------------------------------------- tracks and fits


def smooth_tracks(P, C, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence-weighted temporal smoothing of positions (T, L, 3) and confidences (T, L).

    A local linear fit per frame with Gaussian x confidence weights: unlike a plain weighted
    mean it does not flatten steady motion (no lag at clip ends, no shrinking of fast moves),
    and it bridges frames where a landmark was not seen. A frame's new confidence is the
    kernel-weighted mean of its neighbours', so a gap stays visible downstream.
    """
    if sigma <= 0:
        return P, C
    T = C.shape[0]
    tt = torch.arange(T, dtype=P.dtype, device=P.device)
    dt = tt[None] - tt[:, None]  # (t, s): s - t
    g = torch.exp(-0.5 * (dt / sigma) ** 2)
    g = g * (g > 1e-4)
    W = g[:, :, None] * C[None]  # (t, s, L)
    S0, S1, S2 = (torch.einsum("ts,tsl->tl", dt**n, W) for n in range(3))
    T0 = torch.einsum("tsl,slc->tlc", W, P)
    T1 = torch.einsum("ts,tsl,slc->tlc", dt, W, P)
    det = S0 * S2 - S1**2
    linear = det > 1e-6 * S0.clamp_min(_EPS) ** 2
    mean = T0 / S0.clamp_min(_EPS)[..., None]
    fit = (S2[..., None] * T0 - S1[..., None] * T1) / torch.where(linear, det, 1.0)[..., None]
    P_s = torch.where(linear[..., None], fit, mean)
    P_s = torch.where(S0[..., None] > _EPS, P_s, P)
    return P_s, S0 / g.sum(dim=1, keepdim=True)


def local_rigid_fits(X_l, P, C, neighbours) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted Procrustes per landmark and frame over its landmark neighbourhood (batched).

    X_l (L, 3) anchor landmark positions, P (T, L, 3), C (T, L), neighbours (L, n) landmark
    indices (-1 = none). Returns R (T, L, 3, 3), t (T, L, 3) with x -> R x + t, and a validity
    mask (T, L): at least three confident neighbours. The landmark's own confident position is
    weighted up so the local piece passes through it.
    """
    n_ok = neighbours >= 0
    nb = neighbours.clamp_min(0)
    W = C[:, nb] * n_ok  # (T, L, n)
    W[:, :, 0] = W[:, :, 0] * neighbours.shape[1]  # column 0 is the landmark itself
    src = X_l[nb]  # (L, n, 3)
    dst = P[:, nb]  # (T, L, n, 3)
    mass = W.sum(dim=2, keepdim=True).clamp_min(_EPS)
    mu_s = torch.einsum("tln,lnc->tlc", W, src) / mass
    mu_d = torch.einsum("tln,tlnc->tlc", W, dst) / mass
    H = torch.einsum("tln,tlna,tlnb->tlab", W, src[None] - mu_s[:, :, None], dst - mu_d[:, :, None])
    U, _, Vh = torch.linalg.svd(H)
    sign = torch.sign(torch.linalg.det(Vh.transpose(-1, -2) @ U.transpose(-1, -2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], dim=-1))
    R = Vh.transpose(-1, -2) @ D @ U.transpose(-1, -2)
    t = mu_d - torch.einsum("tlab,tlb->tla", R, mu_s)
    valid = ((W > 0).sum(dim=2) >= 3) & (mass[..., 0] > _EPS)
    return R, t, valid


def fill_invalid(R, t, valid, neighbours) -> tuple[torch.Tensor, torch.Tensor]:
    """Gives every (frame, landmark) without a fit a stand-in transform.

    First the nearest frame in time where that landmark had a fit (the previous one on ties),
    then, for landmarks never fitted, the nearest neighbour landmark fitted in that frame, and
    identity as the last resort. Stand-ins get a tiny skin weight (see ``skin``).
    """
    T = valid.shape[0]
    tt = torch.arange(T, dtype=t.dtype, device=t.device)
    gap = (tt[:, None] - tt[None]).abs() + (tt[None] > tt[:, None]) * 0.5  # prefer earlier frames
    cost = gap[:, :, None] + torch.where(valid, 0.0, float("inf"))[None]  # (T, T_src, L)
    best = cost.argmin(dim=1)  # (T, L)
    found = torch.isfinite(cost.min(dim=1).values)
    lidx = torch.arange(valid.shape[1], device=valid.device)
    R, t = R[best, lidx], t[best, lidx]
    for col in range(1, neighbours.shape[1]):  # borrow from the nearest fitted neighbour landmark
        nb = neighbours[:, col].clamp_min(0)
        take = ~found & found[:, nb] & (neighbours[:, col] >= 0)
        R, t = torch.where(take[..., None, None], R[:, nb], R), torch.where(take[..., None], t[:, nb], t)
        found = found | take
    eye = torch.eye(3, dtype=R.dtype, device=R.device).expand_as(R)
    R = torch.where(found[..., None, None], R, eye)
    t = torch.where(found[..., None], t, torch.zeros_like(t))
    return R, t


def skin_weights(dist, src, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Geodesic-Gaussian skin weights (Nv, k) of each vertex's k nearest landmarks, and their indices.

    dist/src (Nv, k+1): the last column only sets the cutoff, ``w = g(d) - g(d_{k+1})``, so a
    landmark's weight reaches zero exactly when it leaves a vertex's k nearest (no seams).
    """
    # Relative to each vertex's nearest landmark (a common factor of its weights): far from every
    # landmark, plain Gaussians of a narrow sigma underflow to zero and the vertex would collapse.
    d2 = dist**2
    g = torch.exp(-0.5 * (d2 - d2.min(dim=1, keepdim=True).values) / sigma**2)
    base = torch.clamp(g[:, :-1] - g[:, -1:], min=0.0) + _EPS * g[:, :-1]
    return base * (src[:, :-1] >= 0), src[:, :-1].clamp_min(0)


_SKIN_BLOCK = 1 << 24  # elements of the (frames, Nv, k, 12) gather per batched step (128 MiB in float64)


def skin(X, base, nearest_src, R, t, valid) -> np.ndarray:
    """The skin weights' blend of the landmarks' transforms applied to anchor positions, frames batched.

    A transform borrowed from another frame or landmark (``valid`` false) keeps a tiny weight."""
    affine = torch.cat([R, t[..., None]], dim=-1).flatten(-2)  # (T, L, 12): [R | t] rows
    X_h = torch.cat([X, torch.ones_like(X[:, :1])], dim=1)
    T = R.shape[0]
    out = np.empty((T, X.shape[0], 3), dtype=np.float32)
    step = max(1, _SKIN_BLOCK // max(1, base.numel() * 12))
    for a in range(0, T, step):
        b = min(a + step, T)
        w = base * torch.where(valid[a:b, nearest_src], 1.0, _FILLED_WEIGHT)  # (n, Nv, k)
        w = w / w.sum(dim=2, keepdim=True).clamp_min(_EPS)
        blended = torch.einsum("fvk,fvkm->fvm", w, affine[a:b, nearest_src]).unflatten(-1, (3, 4))
        out[a:b] = torch.einsum("fvab,vb->fva", blended, X_h).float().cpu().numpy()
    return out
