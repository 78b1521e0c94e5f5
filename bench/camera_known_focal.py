"""What the matches alone and the masks' outline give the camera, the focal given or solved, on
attention-like matches (``tests/engine/attention_matches.py``): the worst frame's rotation and camera
centre error of every draw, and how often the focal interval holds the true focal.

    STCHAIN_SHARED_DIR=... python bench/camera_known_focal.py --seeds 100-111 [--focal solved] [--mask-error 3]

``--mask-error N`` grows (N > 0) or shrinks (N < 0) every mask by N footage pixels: a mask that is a few
pixels off, as a segmenter's can be. ``--oracle`` (focal given) adds what the matches can give at best: a
least-squares solve from the truth on only the landmarks the camera sees, outliers left out. Octopus on even
seeds, mushroom on odd ones (as the tests).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blender_stchain.engine.camera import CameraSolution, solve, stage
from tests.engine.attention_matches import accuracy, generate, masks
from tests.engine.camera_scenes import pinhole

FRONT_NOISE = {"moderate": 0.4, "heavy": 0.8}  # patches, as attention_matches draws them


def seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def outline(m, error: int):
    from scipy import ndimage

    mk = masks(m)
    if error:
        grow = ndimage.binary_dilation if error > 0 else ndimage.binary_erosion
        mk = np.stack([grow(x, iterations=abs(error)) for x in mk])
    return lambda lo, hi: iter(mk[lo:hi])


def oracle(m, quality: str) -> CameraSolution:
    """Least squares from the true camera on the seen landmarks within 3 standard deviations of their truth."""
    T = len(m.w2c)
    clean = np.stack([pinhole(m.K, m.w2c[t], m.points3d[t]) for t in range(T)])
    near = np.linalg.norm(m.points2d - clean, axis=-1) < 3 * FRONT_NOISE[quality] * m.patch_px * np.sqrt(2)
    truth = CameraSolution(K=m.K, world_to_camera=m.w2c, reprojection_error_px=np.zeros(T),
                           inliers=np.zeros(T, np.int64), image_size=m.image_size)
    return solve(m.points3d, m.points2d, m.weights * (m.front & near), m.image_size, focal_px=float(m.K[0, 0]),
                 uncertainty_px=np.full(m.sigma.shape, m.patch_px), initial=truth, polish=False,
                 robust_scale_px=1e3, focal_interval=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="100-111")
    ap.add_argument("--focal", choices=("given", "solved"), default="given")
    ap.add_argument("--mask-error", type=int, default=0)
    ap.add_argument("--oracle", action="store_true")
    args = ap.parse_args()
    if args.oracle and args.focal != "given":
        ap.error("--oracle needs --focal given")
    rows = {}
    for seed in seeds(args.seeds):
        for kind in ("static", "orbit"):
            for quality in ("moderate", "heavy"):
                m = generate("octopus" if seed % 2 == 0 else "mushroom", kind, quality, seed=seed)
                focal = float(m.K[0, 0]) if args.focal == "given" else None
                runs = [("alone", None), ("masks", outline(m, args.mask_error))] + [("oracle", None)] * args.oracle
                for label, term in runs:
                    sol = oracle(m, quality) if label == "oracle" else stage.estimate(
                        m.points3d, m.points2d, m.weights, m.sigma, m.image_size, m.vertices, m.faces,
                        m.landmark_ids, focal_px=focal, masks=term)
                    a = accuracy(sol, m)
                    lo, hi = sol.focal_interval or (m.K[0, 0], m.K[0, 0])
                    held = float(lo <= m.K[0, 0] <= hi)
                    rows.setdefault((quality, label), []).append((a["rotation_deg"], a["centre"], a["focal"], held))
                    print(f"{seed} {kind} {quality} {label}: rotation {a['rotation_deg']:.2f} deg, centre "
                          f"{100 * a['centre']:.1f}%, focal {100 * a['focal']:.1f}%", flush=True)
    for (quality, label), r in sorted(rows.items()):
        r = np.array(r)
        print(f"{quality} {label}: worst rotation max {r[:, 0].max():.2f} median {np.median(r[:, 0]):.2f} deg; "
              f"within 1 deg {np.mean(r[:, 0] <= 1):.0%}, 2 deg {np.mean(r[:, 0] <= 2):.0%}; centre max "
              f"{100 * r[:, 1].max():.1f}%; focal median {100 * np.median(r[:, 2]):.1f}%, interval holds it "
              f"{np.mean(r[:, 3]):.0%}")


if __name__ == "__main__":
    main()
