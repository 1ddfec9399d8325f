"""Do our layer names address the same units as the literature? Curve census of Lucid's InceptionV1 vs Distill.

Loads Lucid's InceptionV1 from its weights file (model.weights), runs the `curves` census (the fixed
criterion of conf/probes/curves.yaml) at 224 px on conv2d2, mixed3a, mixed3b and mixed4a, and compares the
detected units and their preferred orientations with the published curve detectors
(tests/data/inceptionv1_curve_detectors.json, from Cammarata et al. 2020). Per layer it prints how many
reference units were found, how many other units passed, and the orientation error of the found ones. If
the errors agree after a global rotation/reflection, the two orientation conventions differ (printed as
the best-fitting alignment) while the unit indices still match.

Usage: python scripts/check_lucid_curves.py /path/to/inception5h.pth [--orientations 72] [--radii 4 6 9 14 21 32 48]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "inceptionv1_curve_detectors.json"
CRITERION = ROOT / "conf" / "probes" / "curves.yaml"
LAYERS = ("conv2d2", "mixed3a", "mixed3b", "mixed4a")
# Arc radii in px at 224 px: from below conv2d2's 19 px receptive field to about mixed4a's scale.
RADII_PX = (4.0, 6.0, 9.0, 14.0, 21.0, 32.0, 48.0)


def load_reference(path: str | Path = REFERENCE) -> dict[str, dict[int, float]]:
    """Layer -> {unit: preferred orientation in degrees} of the published curve detectors."""
    data = json.loads(Path(path).read_text())
    return {layer: {int(u["unit"]): float(u["preferred_angle_deg"]) for u in units} for layer, units in
            data["layers"].items()}  # fmt: skip


def census_rows(
    model: nn.Module,
    layers: Sequence[str] = LAYERS,
    size: int = 224,
    orientations: int = 72,
    radii_px: Sequence[float] = RADII_PX,
    seed: int = 0,
    batch_size: int = 16,
) -> list[dict]:
    """Per-unit rows of the curves census (layer, unit, is_curve_detector, preferred_orientation, ...)."""
    from harness.probes import ProbeContext, ProbeSet
    from harness.probes.curves import CurveCensus

    settings = yaml.safe_load(CRITERION.read_text())["curves"]
    settings = {k: v for k, v in settings.items() if k not in ("_target_", "layers", "orientations", "radii")}
    census = CurveCensus(layers=list(layers), orientations=orientations, radii=[r / size for r in radii_px],
                         **{**settings, "random_init": False, "large_image_orientations": None})  # fmt: skip
    # large_image_orientations=None: --orientations at every size (the probe's default shows 36 above 128 px)
    # Only the probe set's image size matters: the census draws its own stimuli.
    grey = ProbeSet(images=torch.full((1, 3, size, size), 0.5), labels=torch.zeros(1, dtype=torch.long),
                    classes=("grey",))  # fmt: skip
    ctx = ProbeContext(model, list(layers), grey, seed=seed, batch_size=batch_size)
    return census.run(ctx).tables["units"]


def _angle_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


def compare(rows: list[dict], reference: dict[str, dict[int, float]]) -> dict[str, dict]:
    """Layer -> found / reference counts, extra detectors and orientation errors (degrees) of the found units."""
    out = {}
    for layer, ref in reference.items():
        units = {r["unit"]: r for r in rows if r["layer"] == layer}
        if not units:
            continue
        detected = {u for u, r in units.items() if r["is_curve_detector"]}
        found = sorted(detected & set(ref))
        errors = _angle_error(np.array([units[u]["preferred_orientation"] for u in found]),
                              np.array([ref[u] for u in found]))  # fmt: skip
        out[layer] = {
            "found": len(found), "reference": len(ref), "detected": len(detected),
            "extra": len(detected - set(ref)), "found_units": found, "missing_units": sorted(set(ref) - detected),
            "orientation_error_mean": float(errors.mean()) if found else float("nan"),
            "orientation_error_max": float(errors.max()) if found else float("nan"),
        }  # fmt: skip
    return out


def convention_fit(rows: list[dict], reference: dict[str, dict[int, float]]) -> dict[str, float]:
    """Best global map ours -> reference (sign * angle + offset) over the reference units: tells conventions apart."""
    pref = {(r["layer"], r["unit"]): r["preferred_orientation"] for r in rows}
    det = {(r["layer"], r["unit"]) for r in rows if r["is_curve_detector"]}
    pairs = [(pref[(lay, u)], a, (lay, u) in det) for lay, ref in reference.items() for u, a in ref.items()
             if (lay, u) in pref]  # fmt: skip
    if sum(d for *_, d in pairs) >= 3:
        pairs = [p for p in pairs if p[2]]  # the found units, when there are enough of them
    if not pairs:
        return {"sign": 1.0, "offset": 0.0, "mean_error": float("nan")}
    ours, ref = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    best = min((float(_angle_error(s * ours + c, ref).mean()), s, c) for s in (1.0, -1.0) for c in range(360))
    return {"sign": best[1], "offset": float(best[2]), "mean_error": best[0]}


def report(comparison: dict[str, dict], fit: dict[str, float]) -> str:
    lines = [f"{'layer':<9}{'found/ref':>10}{'detected':>10}{'extra':>7}   orientation error mean / max (deg)"]
    for layer, c in comparison.items():
        err = f"{c['orientation_error_mean']:.1f} / {c['orientation_error_max']:.1f}" if c["found"] else "-"
        lines.append(f"{layer:<9}{c['found']:>5}/{c['reference']:<4}{c['detected']:>10}{c['extra']:>7}   {err}")
        if c["missing_units"]:
            lines.append(f"{'':<9}missing: {', '.join(map(str, c['missing_units']))}")
    same = fit["sign"] == 1.0 and min(fit["offset"], 360 - fit["offset"]) <= 5
    lines.append(f"orientation convention: {'same as the reference' if same else 'differs'} (best fit: reference = "
                 f"{'+' if fit['sign'] > 0 else '-'}ours + {fit['offset']:.0f} deg, mean error "
                 f"{fit['mean_error']:.1f} deg)")  # fmt: skip
    return "\n".join(lines)


def check(model: nn.Module, reference: dict[str, dict[int, float]] | None = None, **census: object) -> dict:
    """Census + comparison: {"comparison": per layer, "fit": convention fit, "seconds": census time}."""
    reference = load_reference() if reference is None else reference
    layers = census.pop("layers", tuple(reference))
    start = time.perf_counter()
    rows = census_rows(model, layers=layers, **census)
    seconds = time.perf_counter() - start
    return {"comparison": compare(rows, reference), "fit": convention_fit(rows, reference), "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", help="Lucid's InceptionV1 state dict (inception5h.pth)")
    parser.add_argument("--orientations", type=int, default=72)
    parser.add_argument("--radii", type=float, nargs="+", default=list(RADII_PX), help="arc radii in px")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--reference", default=str(REFERENCE))
    args = parser.parse_args(argv)

    from harness.facts.errors import ConfigError
    from harness.models.build import inception_v1
    from harness.models.pretrained import LUCID_BLOB_ID, git_blob_id

    try:
        model = inception_v1(weights=args.weights, num_classes=1008).eval()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    blob = git_blob_id(args.weights)
    print(f"weights: {args.weights} (git blob {blob}{'' if blob == LUCID_BLOB_ID else ', not the common conversion'})")
    result = check(model, load_reference(args.reference), size=args.size, orientations=args.orientations,
                   radii_px=args.radii, batch_size=args.batch_size)  # fmt: skip
    print(report(result["comparison"], result["fit"]))
    print(f"census: {result['seconds']:.1f} s for {len(result['comparison'])} layers at {args.size} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
