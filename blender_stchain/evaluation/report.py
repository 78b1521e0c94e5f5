"""The table ``eval`` prints: one row per clip and method, then the means."""

from __future__ import annotations

from .runner import mean_metrics

HEADERS = {"cd_3d": "CD-3D", "cd_4d": "CD-4D", "cd_m": "CD-M", "focal_error": "focal%", "rotation_deg": "rot deg",
           "centre_error": "centre", "reprojection_px": "reproj px", "delta_avg": "d_avg", "occlusion_accuracy": "OA",
           "average_jaccard": "AJ", "seconds": "sec"}


def table(report: dict) -> str:
    rows = [(r["clip"], r["method"], mean_metrics([r])) for r in report["clips"]]
    rows += [("MEAN", m, v) for m, v in report["mean"].items()]
    cols = [k for k in HEADERS if any(k in v for _, _, v in rows)]
    head = ["clip", "method"] + [HEADERS[c] for c in cols]
    body = [[c, m] + [_fmt(c2, v.get(c2)) for c2 in cols] for c, m, v in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(x).rjust(w) if i > 1 else str(x).ljust(w)
                                   for i, (x, w) in enumerate(zip(cells, widths)))
    out = [f"== {report['label']} | protocol: {report['protocol']} ==", line(head), line(["-" * w for w in widths])]
    return "\n".join(out + [line(b) for b in body])


def _fmt(name, value) -> str:
    if value is None:
        return "-"
    if name == "focal_error":
        return f"{100 * value:.2f}"
    if name in ("delta_avg", "occlusion_accuracy", "average_jaccard"):
        return f"{100 * value:.1f}"
    if name in ("rotation_deg", "reprojection_px", "seconds"):
        return f"{value:.2f}"
    return f"{value:.4f}"
