"""harness-compare's headline family with planted answers (issue 29): a planted effect of known size is resolved at
3 seeds, A/A splits of one config give no more false findings than the nominal FDR, config facts are never tested,
counts of units no longer stop at the exact-permutation floor (0.1 at 3 vs 3), a planted unit-level shift gets an
interval that holds it, the headline names the seeds an unresolved effect needs, and bad input gets one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from harness.compare import compare
from harness.compare.cli import main
from harness.compare.counts import count_test
from harness.compare.family import family, family_layers
from harness.compare.load import Run
from harness.compare.splits import aa_splits, seed_curve
from harness.compare.stats import EXPLORATORY, FACT, FAMILY, variant_effects
from harness.compare.units import shift
from harness.facts import keys as pk
from tests.helpers import write_record

WIDE = "model.widen.mixed3b_5x5=32"
# model order as the default InceptionV1 record lists it (a shortened width table)
CHANNELS = {"conv2d2": 48, "mixed3a": 64, "mixed3a_5x5": 8, "mixed3b": 120, "mixed3b_5x5": 24, "mixed4a": 127,
            "mixed4b": 128}  # fmt: skip
LAYERS = ("conv2d2", "mixed3a", "mixed3b", "mixed4a", "mixed4b")
COUNTS = {pk.key(pk.CURVES, "{}", pk.DETECTORS): 0.08, pk.key(pk.DISSECT, "{}", "detector_units"): 0.10}


def _metrics(rng: np.random.Generator, channels: dict[str, int], shift_sd: dict[str, float] | None = None) -> dict:
    """One seed's headline metrics at every layer: seed noise everywhere, counts overdispersed across seeds
    (beta-binomial); `shift_sd` adds planted shifts (in seed sds for continuous metrics, rate x for counts)."""
    shift_sd = shift_sd or {}
    out = {"test/acc": 0.95 + 0.01 * rng.normal(), "test/loss": 0.15 + 0.02 * rng.normal()}
    for layer in LAYERS:
        for name, (mean, sd) in {pk.key(pk.CKA, layer, pk.CKA_TO_REFERENCE): (0.6, 0.05),
                                 pk.key(pk.LINEAR, layer, "class_acc"): (0.8, 0.02),
                                 pk.key(pk.DISSECT, layer, pk.UNIQUE_CONCEPTS): (3.0, 0.8),
                                 pk.key(pk.ACTIVATIONS, layer, pk.SPARSITY): (0.5, 0.03)}.items():  # fmt: skip
            out[name] = mean + sd * (rng.normal() + shift_sd.get(name, 0.0))
        for pattern, rate in COUNTS.items():
            name = pattern.format(layer)
            rate *= shift_sd.get(name, 1.0)
            p = rng.beta(rate * 100, (1 - rate) * 100)  # seed-level spread of the rate (overdispersion)
            out[name] = float(rng.binomial(channels[layer], p))
        out[pk.key(pk.ACTIVATIONS, layer, pk.DEAD_FRACTION)] = float(rng.binomial(channels[layer], 0.01)) / channels[
            layer
        ]
    out[pk.key(pk.SPECTRA, "mixed3b_5x5", "stable_rank")] = 8.0 + rng.normal() + shift_sd.get("stable_rank", 0.0)
    return out


def _run(variant: str, seed: int, metrics: dict, channels: dict[str, int] = CHANNELS, widen: int = 0) -> Run:
    metrics = {**metrics, "model/params/total": 97512.0 + 1000 * widen, "explore/noise": float(seed % 3)}
    return Run(Path(f"/r/{variant}{seed}"), "finished", variant, seed, metrics, widen={"mixed3b_5x5": widen},
               channels=dict(channels))  # fmt: skip


# Known sizes: 12 seed sds of CKA and of stable rank, 6x the curve-detector rate. Smaller ones are real but not
# reliably resolved by 3 seeds within a family of ~24 tests (BH's first step is 0.05 / 24): at the overdispersion
# above, a 4x rate reaches it in half the experiments (the headline's power line says so).
PLANTED = {
    pk.key(pk.CKA, "mixed3b", pk.CKA_TO_REFERENCE): -12.0,
    pk.key(pk.CURVES, "mixed3b", pk.DETECTORS): 6.0,
    "stable_rank": 12.0,
}


def _experiment(seeds: int, seed: int = 0, planted: dict | None = None) -> tuple[list[Run], list[Run]]:
    rng = np.random.default_rng(seed)
    wide_channels = {**CHANNELS, "mixed3b": 152, "mixed3b_5x5": 56}
    base = [_run("b", s, _metrics(rng, CHANNELS)) for s in range(seeds)]
    wide = [_run("w", s, _metrics(rng, wide_channels, planted), wide_channels, 32) for s in range(seeds)]
    return base, wide


def _fam(base: list[Run], wide: list[Run]) -> set[str]:
    return family(dict.fromkeys(m for r in [*base, *wide] for m in r.metrics), base, wide)


def test_family_is_the_headline_metrics_at_the_edited_layers_and_neighbours() -> None:
    base, wide = _experiment(3)
    fam = _fam(base, wide)
    assert family_layers({"mixed3b_5x5"}, list(CHANNELS)) == {"mixed3b_5x5", "mixed3b", "mixed3a", "mixed4a"}
    assert 10 <= len(fam) <= 30
    assert {"test/acc", "test/loss", pk.key(pk.SPECTRA, "mixed3b_5x5", "stable_rank")} <= fam
    assert pk.key(pk.CURVES, "mixed3a", pk.DETECTORS) in fam and pk.key(pk.CURVES, "mixed4a", pk.DETECTORS) in fam
    assert not [m for m in fam if "/mixed4b/" in m or "/conv2d2/" in m]  # two layers away: exploratory
    assert "model/params/total" not in fam and "explore/noise" not in fam
    everywhere = _fam(base, [_run("w", r.seed, r.metrics) for r in base])  # no edit between the arms
    assert [m for m in everywhere if "/mixed4b/" in m] and len(everywhere) > len(fam)


def test_planted_effects_of_known_size_are_resolved_at_three_seeds() -> None:
    """Five independent 3 vs 3 experiments with the same planted effects: each planted metric is resolved in at
    least four, and the 20-odd null metrics of the family give at most one false finding in all five."""
    planted = {pk.key(pk.CKA, "mixed3b", pk.CKA_TO_REFERENCE), pk.key(pk.CURVES, "mixed3b", pk.DETECTORS),
               pk.key(pk.SPECTRA, "mixed3b_5x5", "stable_rank")}  # fmt: skip
    resolved, false = dict.fromkeys(planted, 0), 0
    for dataset in range(5):
        base, wide = _experiment(3, seed=dataset, planted=PLANTED)
        effects = {e.metric: e for e in variant_effects(base, wide, family=_fam(base, wide))}
        found = {m for m, e in effects.items() if e.beyond_noise}
        resolved = {m: n + (m in found) for m, n in resolved.items()}
        false += len(found - planted)
        assert effects[pk.key(pk.CURVES, "mixed3b", pk.DETECTORS)].test == "count"
        cka = effects[pk.key(pk.CKA, "mixed3b", pk.CKA_TO_REFERENCE)]
        assert cka.ci[0] < -0.6 < cka.ci[1] < 0  # the interval holds the planted -0.6 and excludes 0
    assert min(resolved.values()) >= 4, resolved
    assert false <= 1


def test_aa_splits_of_one_config_stay_within_the_nominal_fdr() -> None:
    """Six seeds of one config, every 3 vs 3 split, five datasets: 50 experiments with no true effect, each tested
    on the family of a widened mixed3b_5x5. Every finding is false, so the share of experiments with any finding is
    the FDR; BH promises <= 0.05."""
    points = []
    for dataset in range(5):
        rng = np.random.default_rng(100 + dataset)
        points += aa_splits([_run("a", s, _metrics(rng, CHANNELS)) for s in range(6)], 3, {"mixed3b_5x5"})
    experiments = len(points)
    with_findings = sum(bool(p.findings) for p in points)
    findings = sum(len(p.findings) for p in points)
    assert experiments == 50
    assert with_findings / experiments <= 0.05 + 0.04  # nominal 0.05; 50 correlated splits: allow sampling error
    assert findings / experiments <= 0.1


def test_config_facts_are_reported_never_tested(tmp_path: Path) -> None:
    base, wide = _experiment(3)
    effects = {e.metric: e for e in variant_effects(base, wide, family=_fam(base, wide))}
    params = effects["model/params/total"]
    assert params.role == FACT and params.p is None and params.q is None and params.beyond_noise is None
    assert params.diff == 32000.0
    assert effects["explore/noise"].role == EXPLORATORY and effects["explore/noise"].beyond_noise is None
    assert effects["test/acc"].role == FAMILY
    for i, (variant, widen) in enumerate((("base", 0), (WIDE, 32)) * 2):
        write_record(tmp_path / "mr", str(i), variant=variant, seed=i // 2, widen={"mixed3b_5x5": widen},
                     params=1000 + widen, test={"test/acc": 0.9 + 0.01 * i},
                     channels={"mixed3b": 120 + widen, "mixed3b_5x5": 24 + widen})  # fmt: skip
    result = compare([tmp_path / "mr"], out=tmp_path / "out")
    assert "config facts (not tested): model/params/total 1000 → 1032; model/params/trainable 1000 → 1032; " \
           "channels/mixed3b 120 → 152; channels/mixed3b_5x5 24 → 56" in result.headline.text
    assert not [e for e in result.effects[WIDE] if e.metric.startswith("model/") and e.p is not None]


def test_constant_arm_counts_are_not_floored_at_the_permutation_p() -> None:
    p, _, dispersion = count_test([(0, 120)] * 3, [(6, 120)] * 3)
    assert p < 0.01 and dispersion == 1.0  # Welch / exact permutation: 0.1, whatever the size
    # hand computation: the likelihood-ratio statistic of 0/360 vs 18/360 against the pooled 18/720
    k, n, pooled = 18.0, 360.0, 18.0 / 720
    lr = 2 * (k * math.log(k / (n * pooled)) + (n - k) * math.log((n - k) / (n * (1 - pooled)))
              + n * math.log(1 / (1 - pooled)))  # fmt: skip
    assert p == pytest.approx(sps.f.sf(lr, 1, 4))
    assert count_test([(0, 120)] * 3, [(1, 120)] * 3)[0] > 0.05  # 3 detectors in 360 units: not resolved
    same, _, _ = count_test([(5, 120), (9, 120), (7, 120)], [(7, 120), (5, 120), (9, 120)])
    assert same > 0.9
    spread, _, over = count_test([(2, 120), (20, 120), (8, 120)], [(9, 120), (30, 120), (14, 120)])
    assert over > 3 and spread > 0.1  # seed-level overdispersion widens the test


def test_unit_level_shift_interval_holds_the_planted_shift() -> None:
    rng = np.random.default_rng(0)
    base = [rng.normal(3.0 + 0.1 * s, 1.0, 150) for s in range(3)]
    wide = [rng.normal(4.0 + 0.1 * s, 1.0, 150) for s in range(3)]
    _, _, diff, low, high = shift(base, wide)
    assert low < 1.0 < high and low > 0 and diff == pytest.approx(1.0, abs=0.2)
    _, _, _, low, high = shift(base, [rng.normal(3.0 + 0.1 * s, 1.0, 150) for s in range(3)])
    assert low < 0 < high  # negative control: no shift planted


def test_report_pipeline_unit_shifts_power_line_and_replication(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for side, variant in enumerate(("base", WIDE)):
        for seed in range(6):
            rows = [{"layer": "mixed3b", "unit": u, "selectivity": float(rng.normal(3 + side, 1)),
                     "circular_variance": 0.5} for u in range(60)]  # fmt: skip
            metrics = {pk.key(pk.CKA, "mixed3b", pk.CKA_TO_REFERENCE): 0.6 - 0.3 * side + 0.05 * rng.normal(),
                       pk.key(pk.LINEAR, "mixed3b", "class_acc"): 0.8 + 0.02 * rng.normal() + 0.03 * side}  # fmt: skip
            write_record(tmp_path / "mr", f"{side}-{seed}", variant=variant, seed=seed, metrics=metrics,
                         widen={"mixed3b_5x5": 32 * side}, test={"test/acc": 0.9 + 0.01 * (rng.normal() + side)},
                         channels={"mixed3b": 120, "mixed3b_5x5": 24}, tables={pk.CURVES: rows})  # fmt: skip
    result = compare([tmp_path / "mr"], out=tmp_path / "out")
    lead, cka = result.headline.lines[1], pk.key(pk.CKA, "mixed3b", pk.CKA_TO_REFERENCE)
    found = [e.metric for e in result.effects[WIDE] if e.beyond_noise]
    rep = result.replication[WIDE]
    assert cka in found and cka in rep.replicate and "test/acc" not in found  # planted -6 sd and +1 sd
    assert lead.startswith(f"{WIDE}: {len(found)} findings beyond noise ({len(rep.replicate)} replicate on the split "
                           f"halves) in a family of 3 tests; test/acc")  # fmt: skip
    unit = next(e for e in result.effects[WIDE] if e.metric == "curves/mixed3b/selectivity/unit_median")
    assert unit.role == EXPLORATORY and 0 < unit.ci[0] < 1 < unit.ci[1]
    power = next(line for line in result.headline.lines if "power:" in line)
    open_ = min((e for e in result.effects[WIDE] if e.role == FAMILY and e.p and not e.beyond_noise),
                key=lambda e: e.seeds_needed or 99)  # fmt: skip
    threshold = 0.05 / 3
    n = next(n for n in range(2, 65) if 2 * sps.t.sf(abs(open_.effect) * math.sqrt(n / 2), 2 * n - 2) <= threshold)
    n = max(n, 7)  # never the 6 seeds that just failed to resolve it
    assert f"6 vs 6 seeds cannot resolve an effect the size of {open_.metric}'s; seed=range({n}) would" in power
    doc = json.loads((tmp_path / "out" / "headline.json").read_text())["variants"][0]
    assert doc["findings"] == len(found) and doc["replicate"] == len(rep.replicate)
    assert doc["power"]["seeds_needed_per_arm"] == n
    assert "Headline family: 3 metrics" in (tmp_path / "out" / "report.html").read_text()


def test_bad_input_headline_key_and_one_seed(tmp_path: Path, capsys) -> None:
    for i, variant in enumerate(("base", WIDE)):
        write_record(tmp_path / "mr", str(i), variant=variant, widen={"mixed3b_5x5": 32 * i},
                     metrics={pk.key(pk.CURVES, "mixed3b", pk.DETECTORS): 3.0 + 5 * i},
                     test={"test/acc": 0.9})  # fmt: skip
    assert main([str(tmp_path / "mr"), "--out", str(tmp_path / "o"), "--headline", "curves/mixed9z/*"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: headline key 'curves/mixed9z/*' names no probe metric")
    assert main([str(tmp_path / "mr"), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "no test possible (1 seed(s) vs 1 baseline seed(s)" in out and "effect sizes only" in out
    rows = (tmp_path / "o" / "effects.csv").read_text()
    assert "curves/mixed3b/detectors" in rows and "true" not in rows  # a difference, never a finding


def test_seed_curve_and_aa_splits_use_the_comparison_functions() -> None:
    base, wide = _experiment(6, planted=PLANTED)
    curve = seed_curve(base, wide, [2, 3, 6, 8])
    assert [len(p.seeds[0]) for p in curve] == [2, 3, 6]  # 8 is more than the arms hold
    assert curve[1].seeds == ([0, 1, 2], [0, 1, 2]) and curve[0].replicate is None and curve[2].replicate is not None
    assert len(curve[2].findings) >= len(curve[0].findings) and 10 <= curve[1].family_size <= 30
    power = curve[1].power_curve([3, 64])
    assert power[3] == len(curve[1].findings) and power[64] == len(curve[1].findings) + len(curve[1].needed)
    splits = aa_splits(base, 3, {"mixed3b_5x5"})
    assert len(splits) == 10 and all(sorted(p.seeds[0] + p.seeds[1]) == list(range(6)) for p in splits)
    assert splits[0].family_size == curve[1].family_size  # the planned edit's family, though the arms are one config
    assert len(aa_splits(base, 2, None, limit=7)) == 7  # 45 disjoint 2 vs 2 pairs of six seeds, 7 drawn
    assert len(aa_splits(base[:5], 2, None, other_arm=3)) == 10  # 2 vs 3 of five seeds: C(5, 2)


def test_power_never_names_the_seeds_that_just_failed() -> None:
    """Planted: d = 2.5 with unequal spreads. The expected p at 3 vs 3 (2n - 2 = 4 degrees of freedom) passes alpha,
    Welch's observed p (about 2 degrees of freedom) does not: the headline must ask for more than 3 seeds."""
    base = [Run(Path(f"/r/b{s}"), "finished", "base", s, {"test/acc": v}) for s, v in enumerate([0.0, 0.01, -0.01])]
    wide = [Run(Path(f"/r/w{s}"), "finished", "wide", s, {"test/acc": v}) for s, v in enumerate([0.77, 1.77, 2.77])]
    (e,) = variant_effects(base, wide)
    assert not e.beyond_noise and e.effect == pytest.approx(2.5, abs=0.01)
    assert 2 * sps.t.sf(e.effect * math.sqrt(3 / 2), 4) <= 0.05  # the expectation alone would say "3 seeds"
    assert e.seeds_needed == 4
