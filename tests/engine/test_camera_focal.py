"""The focal interval and the known-focal path over many random draws of attention-like matches
(``attention_matches``): eight seeds x static / orbiting camera x moderate / heavy noise, octopus on
even seeds and mushroom on odd ones. These seeds (0-7) were not used to calibrate the interval
(``bench/focal_interval.py`` used seeds 100 and up). Run with -s for the figures."""

from __future__ import annotations

import numpy as np
import pytest

from blender_stchain.contracts.settings import Settings
from blender_stchain.engine.camera import solve, stage
from tests.engine.attention_matches import accuracy, generate, masks
from tests.engine.camera_scenes import scene

SEEDS = range(8)
DRAWS = [(seed, kind, quality) for seed in SEEDS for kind in ("static", "orbit") for quality in ("moderate", "heavy")]


def draw(seed, kind, quality):
    return generate("octopus" if seed % 2 == 0 else "mushroom", kind, quality, seed=seed)


def run_stage(m, **kw):
    return stage.estimate(m.points3d, m.points2d, m.weights, m.sigma, m.image_size, m.vertices, m.faces,
                          m.landmark_ids, **kw)


@pytest.fixture(scope="module")
def solved():
    """(seed, kind, quality, true focal, solution) of every draw, the focal solved."""
    out = []
    for seed, kind, quality in DRAWS:
        m = draw(seed, kind, quality)
        out.append((seed, kind, quality, float(m.K[0, 0]), run_stage(m)))
    return out


@pytest.mark.slow
def test_the_focal_interval_holds_the_true_focal_over_random_draws(solved):
    trusted = [(q, f, s) for _, _, q, f, s in solved if s.estimated]
    for seed, kind, quality, f, s in solved:
        if s.estimated:
            lo, hi = s.focal_interval
            print(f"\n{seed} {kind} {quality}: focal {s.K[0, 0] / f - 1:+.3f}, interval {lo / f - 1:+.3f}.."
                  f"{hi / f - 1:+.3f}, width {(hi - lo) / s.K[0, 0]:.3f}", end="")
        else:
            print(f"\n{seed} {kind} {quality}: refused ({s.reason})", end="")
    assert all(s.focal_interval is not None and s.focal_source == "solved" for _, _, s in trusted)
    inside = [s.focal_interval[0] <= f <= s.focal_interval[1] for _, f, s in trusted]
    widths = [(s.focal_interval[1] - s.focal_interval[0]) / s.K[0, 0] for _, _, s in trusted]
    moderate = [s.estimated for _, _, q, _, s in solved if q == "moderate"]
    print(f"\ntrusted {len(trusted)}/{len(solved)} (moderate {sum(moderate)}/{len(moderate)}), true focal inside "
          f"{np.mean(inside):.0%}, median width {np.median(widths):.3f}")
    assert np.mean(inside) >= 0.9
    assert np.median(widths) <= 0.25
    assert np.mean(moderate) >= 0.9


@pytest.mark.slow
def test_a_poorly_determined_focal_is_flagged_and_the_poses_kept(solved):
    """The warning fires exactly where the interval is wider than the setting; the camera stays."""
    for *_, s in solved:
        if s.estimated:
            lo, hi = s.focal_interval
            flagged = any(stage.POORLY_DETERMINED in w for w in s.warnings)
            assert flagged == ((hi - lo) / s.K[0, 0] > Settings.camera_focal_max_width)
    m = draw(0, "static", "moderate")
    sol = run_stage(m, focal_max_width=0.01)
    assert sol.estimated and sol.focal_interval is not None
    assert sol.warnings[-1].startswith(f"camera: {stage.POORLY_DETERMINED} (focal ")
    assert accuracy(sol, m)["rotation_deg"] < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_garbage_is_always_refused(seed):
    for kind in ("static", "orbit"):
        sol = run_stage(draw(seed, kind, "garbage"))
        assert not sol.estimated and sol.focal_interval is None and sol.focal_source == "default camera"


@pytest.fixture(scope="module")
def given():
    """(quality, accuracy from the matches alone, accuracy with the clip's masks) of every draw, the true
    focal given."""
    rows = []
    for seed, kind, quality in DRAWS:
        m = draw(seed, kind, quality)
        outline = masks(m)
        out = [quality]
        for term in (None, lambda lo, hi, outline=outline: iter(outline[lo:hi])):
            sol = run_stage(m, focal_px=float(m.K[0, 0]), masks=term)
            assert sol.estimated, (seed, kind, quality, sol.reason)
            assert sol.focal_interval is None and sol.focal_source == "given" and sol.K[0, 0] == m.K[0, 0]
            out.append(accuracy(sol, m))
        print(f"\n{seed} {kind} {quality}: rotation {out[1]['rotation_deg']:.2f} deg, centre {100 * out[1]['centre']:.1f}%; "
              f"with masks {out[2]['rotation_deg']:.2f} deg, {100 * out[2]['centre']:.1f}%", end="")
        rows.append(out)
    return rows


def _worst(rows, quality, which):
    return np.array([r[which]["rotation_deg"] for r in rows if r[0] == quality])


@pytest.mark.slow
def test_with_the_focal_and_the_masks_given_the_poses_are_right(given):
    """The true focal and the object's masks given (the outline term): every camera within 5% of the distance,
    the worst frame's rotation within 1 degree on moderate noise and 2 degrees on heavy noise."""
    assert all(r[2]["centre"] <= 0.05 for r in given)
    moderate, heavy = _worst(given, "moderate", 2), _worst(given, "heavy", 2)
    print(f"\nwith masks: worst rotation {moderate.max():.2f} deg moderate, {heavy.max():.2f} heavy")
    assert moderate.max() <= 1.0 and heavy.max() <= 2.0


@pytest.mark.slow
def test_with_the_focal_given_the_matches_alone_leave_the_rotation_about_the_object_loose(given):
    """Without masks, landmarks hidden from the camera (60-70% of them) are matched a few patches off, and the
    rest cannot tell a turn about the object from a slide across it: every camera stays within 3 degrees and
    6% of the distance, 10 of the 16 heavy draws over 2 degrees; the outline term halves the worst rotation
    or better (docs/camera.md)."""
    assert all(r[1]["centre"] <= 0.06 and r[1]["rotation_deg"] <= 3.0 for r in given)
    for quality in ("moderate", "heavy"):
        alone, outlined = _worst(given, quality, 1), _worst(given, quality, 2)
        print(f"\n{quality}: worst rotation median {np.median(alone):.2f} deg alone, {np.median(outlined):.2f} with masks")
        assert np.median(outlined) < 0.6 * np.median(alone)


def test_the_interval_widens_with_the_noise_and_holds_the_focal():
    """Gaussian pixel noise without outliers: the interval holds the solved and the true focal, and its
    width grows in proportion to the noise (4x the noise: 3-5x the width)."""
    widths = []
    for noise in (0.5, 2.0):
        sc = scene("orbit", matches=150, noise=noise, outliers=0.0, seed=5)
        sol = solve(sc.points3d, sc.points2d, sc.weights, sc.image_size)
        lo, hi = sol.focal_interval
        assert lo < sol.K[0, 0] < hi and lo <= sc.K[0, 0] <= hi
        widths.append((hi - lo) / sol.K[0, 0])
    assert 3.0 < widths[1] / widths[0] < 5.0, widths


def test_a_given_focal_has_no_interval():
    sc = scene("static", matches=150, seed=1)
    sol = solve(sc.points3d, sc.points2d, sc.weights, sc.image_size, focal_px=float(sc.K[0, 0]))
    assert sol.focal_interval is None and sol.K[0, 0] == sc.K[0, 0]
