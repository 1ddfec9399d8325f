"""The names probes report under and the bins they count in, for the probes and for every reader of runs.

Why one torch-free module: harness-suggest and harness-compare read these keys from run records
without importing torch, and a reader that retypes a key or a bin width drifts from its producer (the
suggest loader once started 45-degree orientation bins at 0 while the curves probe centred them on 0, so
a coverage of 0.75 came with four empty bins named). Each probe module imports its own names from here,
so ``harness.probes.curves.DETECTORS`` and ``harness.facts.keys.DETECTORS`` are the same object.

Keys: a probe's scalars are ``<layer>/<metric>``; the runner prefixes the probe name, so records and
loggers hold ``<probe>/<layer>/<metric>`` (:func:`key`).
"""

from __future__ import annotations

import math

# --- training metrics: harness.run.module logs `<stage>/<metric>` (and `<stage>/acc/<class>`) -------------
TRAIN, VAL, TEST = "train", "val", "test"
LOSS, ACC = "loss", "acc"
TRAIN_LOSS, TRAIN_ACC = f"{TRAIN}/{LOSS}", f"{TRAIN}/{ACC}"  # epoch means
TRAIN_LOSS_STEP = f"{TRAIN_LOSS}_step"  # the per-batch value (the progress bar)
VAL_LOSS, VAL_ACC, VAL_ACC_BEST = f"{VAL}/{LOSS}", f"{VAL}/{ACC}", f"{VAL}/{ACC}_best"
TEST_LOSS, TEST_ACC = f"{TEST}/{LOSS}", f"{TEST}/{ACC}"


def stage_metric(stage: str, metric: str) -> str:
    """``stage_metric("val", LOSS)`` -> ``val/loss``: how the module names a stage's metric."""
    return f"{stage}/{metric}"


def class_acc(stage: str, name: str) -> str:
    """``class_acc("test", "arc_high")`` -> ``test/acc/arc_high``: a stage's accuracy on one class."""
    return f"{stage}/{ACC}/{name}"

# --- checkpoint keys beside Lightning's own ----------------------------------------------------------------
SCHEDULE_STEP_KEY = "harness_schedule_step"  # a checkpoint's step on its LR schedule (steps carried across growth)

# --- runner bookkeeping (every probe): not results of the model -----------------------------------------
SECONDS, FAILED, SKIPPED = "seconds", "failed", "skipped"
UNITS_TABLE = "units"  # ProbeResult.tables name of a per-unit table; the record lists it as files["table/units"]
TABLE_FILE = f"table/{UNITS_TABLE}"
LAYER, UNIT = "layer", "unit"  # per-unit table columns shared by every probe

# --- activations ---------------------------------------------------------------------------------------
ACTIVATIONS = "activations"
DEAD_FRACTION, SPARSITY = "dead_fraction", "sparsity"
DEAD = "dead"  # per-unit column (and the loader's per-branch count of dead units)

# --- curves --------------------------------------------------------------------------------------------
CURVES = "curves"
DETECTORS, DETECTORS_RANDOM_INIT = "detectors", "detectors_random_init"
ORIENTATION_COVERAGE = "orientation_coverage"
ORIENTATION = "orientation"  # derived per-bin counts: curves/<layer>/orientation/<bin centre in degrees>
IS_CURVE_DETECTOR, PREFERRED_ORIENTATION = "is_curve_detector", "preferred_orientation"  # per-unit columns
COVERAGE_BINS = 8  # default of conf/probes/curves.yaml `coverage_bins`


def orientation_bin(degrees: float, n_bins: int = COVERAGE_BINS) -> int:
    """Index of the orientation bin holding ``degrees``; bins are 360/n wide and CENTRED on 0, 360/n, ...

    Bin 0 of 8 covers [-22.5, 22.5). Centred, so an arc preferring 0 deg and one preferring 359 deg share a bin.
    """
    width = 360.0 / n_bins
    return int(math.floor(((float(degrees) + width / 2) % 360.0) / width))


def orientation_centre(index: int, n_bins: int = COVERAGE_BINS) -> float:
    """Centre of bin ``index`` in degrees (0, 45, ... for 8 bins)."""
    return index * 360.0 / n_bins


def orientation_span(index: int, n_bins: int = COVERAGE_BINS) -> tuple[float, float]:
    """(start, end) of bin ``index`` in degrees within [0, 360): bin 0 of 8 is (337.5, 22.5)."""
    width = 360.0 / n_bins
    return (index * width - width / 2) % 360.0, (index * width + width / 2) % 360.0


def orientation_label(index: int, n_bins: int = COVERAGE_BINS) -> str:
    """The bin's key segment: its centre, as an integer when it is one (``"45"``, ``"22.5"``)."""
    centre = orientation_centre(index, n_bins)
    return str(int(centre)) if centre.is_integer() else f"{centre:g}"


def orientation_coverage(preferred: list[float], n_bins: int = COVERAGE_BINS) -> float:
    """Fraction of the bins holding at least one detector's preferred orientation."""
    return len({orientation_bin(p, n_bins) for p in preferred}) / n_bins


# --- ablation: ablation/<layer>/<group>/<metric>; each group's random control is the group random_<group> --------
ABLATION = "ablation"
DELTA_LOSS, DELTA_ACC, GROUP_SIZE = "delta_loss", "delta_acc", "size"
RANDOM_GROUP = "random_"  # prefix of a group's random-control name

# --- dissect, cka, linear, lineage ---------------------------------------------------------------------
DISSECT, UNIQUE_CONCEPTS = "dissect", "unique_concepts"
DETECTOR_UNITS, POLYSEMANTIC_UNITS = "detector_units", "polysemantic_units"
CKA, CKA_TO_REFERENCE = "cka", "cka_to_reference"
LINEAR = "linear"
LINEAGE, ADDED = "lineage", "added"  # lineage/<layer>/added/<category> and .../<category>_frac
LINEAGE_CATEGORIES: tuple[str, ...] = ("dead", "duplicate", "curve_detector", "other_detector", "other")


# --- growth criteria (gradmax, effective_rank, sensli): read by harness-oracle and the grow loop ------------
GRADMAX, EFFECTIVE_RANK, SENSLI, NORTH = "gradmax", "effective_rank", "sensli", "north"
SCORE, SCORE_PER_PARAM = "score", "score_per_param"  # gradmax/<target>/..., sensli/<insert position>/score
RANK_FRACTION, RANK_FRACTION_INIT, RANK_RATIO_TO_INIT = "fraction", "fraction_init", "ratio_to_init"
# probe -> the metrics that rank candidates, first found wins (effective_rank has no ratio without init weights)
GROWTH_SCORES: dict[str, tuple[str, ...]] = {
    GRADMAX: (SCORE,),
    EFFECTIVE_RANK: (RANK_RATIO_TO_INIT, RANK_FRACTION),
    SENSLI: (SCORE,),
    NORTH: (SCORE,),  # phi - gamma * phi_init (no score without the init control: NORTH needs it)
}


def linear_acc(target: str) -> str:
    """The linear probe's metric name for a read-out target (``class`` -> ``class_acc``)."""
    return f"{target}_acc"


def key(probe: str, layer: str, metric: str) -> str:
    """The record / logger key of one probe scalar: ``curves/mixed3b/detectors``."""
    return f"{probe}/{layer}/{metric}"


# --- what harness-compare tests (issue 29): headline metrics, counts of units, per-unit columns ------------
# A few metrics per layer that an experiment's test family is built from (the rest is exploratory); each name
# is one a probe above reports as <layer>/<metric>.
SPECTRA, STABLE_RANK = "spectra", "stable_rank"
HEADLINE: dict[str, tuple[str, ...]] = {
    ACTIVATIONS: (DEAD_FRACTION, SPARSITY),
    CURVES: (DETECTORS,),
    DISSECT: (DETECTOR_UNITS, UNIQUE_CONCEPTS),
    LINEAR: (linear_acc("class"),),
    CKA: (CKA_TO_REFERENCE,),
    SPECTRA: (STABLE_RANK,),
}
# Metrics that count k of a layer's N units, tested as counts (None: already a count; "fraction": k / N).
UNIT_COUNTS: dict[tuple[str, str], str | None] = {
    (CURVES, DETECTORS): None,
    (DISSECT, DETECTOR_UNITS): None,
    (DISSECT, POLYSEMANTIC_UNITS): None,
    (ACTIVATIONS, DEAD_FRACTION): "fraction",
}
# Per-unit table columns whose distribution harness-compare compares between arms (seed- and unit-level bootstrap).
UNIT_COLUMNS: dict[str, tuple[str, ...]] = {
    CURVES: ("selectivity", "circular_variance"),
    DISSECT: ("iou",),
    ACTIVATIONS: ("frac_active", "mean"),
}
