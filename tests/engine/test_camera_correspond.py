"""Attention -> image position: the peak estimate on synthetic patch distributions."""

from __future__ import annotations

import numpy as np
import torch

from blender_stchain.engine.chain.correspond import peak_position

GRID, PX = 37, 518.0
CELL = PX / GRID


def gaussian_peak(centre_xy, width=0.7):
    """A blob centred at ``centre_xy`` (patch units, continuous: patch i spans [i, i+1))."""
    c = np.arange(GRID) + 0.5
    gx, gy = np.meshgrid(c, c)
    blob = np.exp(-((gx - centre_xy[0]) ** 2 + (gy - centre_xy[1]) ** 2) / (2 * width**2))
    return blob / blob.sum()


def test_peak_holds_against_a_diffuse_floor():
    rng = np.random.default_rng(0)
    worst = {}
    for floor in (0.0, 0.5, 0.8, 0.9):
        errors = []
        for _ in range(40):
            truth = rng.uniform(2, GRID - 2, 2)  # near the border too, where a floor pulls hardest
            floor_map = rng.uniform(0.5, 1.5, (GRID, GRID))
            floor_map /= floor_map.sum()
            p = (1 - floor) * gaussian_peak(truth) + floor * floor_map
            xy, _, _ = peak_position(torch.tensor(p.reshape(1, -1)), GRID, PX)
            errors.append(np.linalg.norm(xy[0].numpy() / CELL - truth))
        worst[floor] = max(errors)
    print("\npeak error (patches) by floor share:", {k: round(v, 3) for k, v in worst.items()})
    assert all(v < 0.25 for v in worst.values())


def test_old_whole_map_soft_argmax_would_fail_the_same_case():
    """The bias this estimator removes is real: the whole-map centroid is dragged to the centre."""
    truth = np.array([5.0, 6.0])
    p = 0.1 * gaussian_peak(truth) + 0.9 / GRID**2
    c = np.arange(GRID) + 0.5
    whole = np.array([(p.sum(0) * c).sum(), (p.sum(1) * c).sum()])
    ours = peak_position(torch.tensor(p.reshape(1, -1)), GRID, PX)[0][0].numpy() / CELL
    assert np.linalg.norm(whole - truth) > 5 and np.linalg.norm(ours - truth) < 0.25


def test_two_peaks_follow_the_stronger():
    a, b = np.array([8.3, 10.6]), np.array([27.2, 25.1])
    p = 0.35 * gaussian_peak(a) + 0.2 * gaussian_peak(b) + 0.45 / GRID**2
    xy, conf, _ = peak_position(torch.tensor(p.reshape(1, -1)), GRID, PX)
    assert np.linalg.norm(xy[0].numpy() / CELL - a) < 0.25
    assert 0.2 < conf.item() < 0.5  # the weaker peak's and the floor's mass is not counted


def test_flat_map_has_no_confidence_and_sharp_peaks_are_certain():
    flat = torch.full((1, GRID * GRID), 1.0 / GRID**2, dtype=torch.float64)
    noisy = torch.tensor(np.random.default_rng(1).uniform(0.9, 1.1, (1, GRID * GRID)))
    sharp = torch.tensor(gaussian_peak([12.5, 12.5], width=0.3).reshape(1, -1))
    wide = torch.tensor(gaussian_peak([12.5, 12.5], width=1.2).reshape(1, -1))
    conf = [peak_position(p, GRID, PX)[1].item() for p in (flat, noisy, sharp, wide)]
    sig = [peak_position(p, GRID, PX)[2].item() for p in (sharp, wide)]
    print(f"\nconfidence flat {conf[0]:.3f}, noisy-flat {conf[1]:.3f}, sharp {conf[2]:.3f}, wide {conf[3]:.3f}; "
          f"sigma sharp {sig[0]:.1f} px, wide {sig[1]:.1f} px (cell {CELL:.1f} px)")
    assert conf[0] < 0.01 and conf[1] < 0.05
    assert conf[2] > 0.95 and conf[3] > 0.6
    assert CELL / np.sqrt(12) * 0.99 < sig[0] < sig[1] < 2 * CELL
