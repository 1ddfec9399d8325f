"""Split-half replication of the beyond-noise count: planted real effects are found in the first half of the
seeds and replicate in the second; planted noise (random, and a seed-level artefact that favours the variant
only in the first half's seeds) does not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.compare import compare
from harness.compare.load import Run
from harness.compare.replication import split_half
from tests.helpers import write_record

SEEDS = range(4)
WIDE = "model.widen.mixed3b_5x5=8"
HEADLINE = ("real/*", "noise/*", "artefact/*")  # planted metrics tested in the family (--headline)


def _experiment(root: Path, real: int, random_noise: int, artefacts: int, seeds=SEEDS) -> Path:
    rng = np.random.default_rng(0)
    for side, variant in enumerate(("base", WIDE)):
        for seed in seeds:
            metrics = {"val/acc": 0.5 + 0.01 * seed}
            for i in range(real):  # +40 sd, whatever the seed
                metrics[f"real/{i}"] = float(rng.normal(0, 1) + 40.0 * side)
            for i in range(random_noise):
                metrics[f"noise/{i}"] = float(rng.normal(0, 1))
            for i in range(artefacts):  # +30 in seeds 0,1 and -30 in seeds 2,3: not a property of the variant
                shift = 30.0 if seed < len(seeds) // 2 else -30.0
                metrics[f"artefact/{i}"] = float(rng.normal(0, 0.5) + shift * side)
            write_record(root, f"{variant}-{seed}", variant=variant, seed=seed, metrics=metrics,
                         widen={"mixed3b_5x5": 8 * side})  # fmt: skip
    return root


def test_planted_real_effects_replicate(tmp_path: Path) -> None:
    result = compare([_experiment(tmp_path / "mr", real=12, random_noise=40, artefacts=0)], out=tmp_path / "out",
                     headline_keys=HEADLINE[:2])  # fmt: skip
    rep = result.replication[WIDE]
    real_found = [m for m in rep.beyond_noise if m.startswith("real/")]
    assert len(real_found) >= 6  # 2 vs 2 seeds per half: Welch has 1-2 degrees of freedom
    assert set(real_found) <= set(rep.replicate)
    assert len(rep.replicate) >= 6 and rep.first_seeds == ([0, 1], [0, 1]) and rep.second_seeds == ([2, 3], [2, 3])
    doc = json.loads((tmp_path / "out" / "headline.json").read_text())
    entry = doc["variants"][0]["replication"]
    assert entry["beyond_noise"] == len(rep.beyond_noise) and entry["replicate"] == len(rep.replicate)
    line = f"{len(rep.beyond_noise)} beyond noise in seeds 0,1, {len(rep.replicate)} replicate in direction"
    assert line in (tmp_path / "out" / "headline.txt").read_text()
    assert line in (tmp_path / "out" / "report.html").read_text()


def test_planted_noise_does_not_replicate(tmp_path: Path) -> None:
    result = compare([_experiment(tmp_path / "mr", real=0, random_noise=40, artefacts=12)], out=tmp_path / "out",
                     headline_keys=HEADLINE[1:])  # fmt: skip
    rep = result.replication[WIDE]
    assert len([m for m in rep.beyond_noise if m.startswith("artefact/")]) >= 10  # looks real in the first half
    assert not [m for m in rep.replicate if m.startswith("artefact/")]  # and reverses in the second
    assert len([m for m in rep.beyond_noise if m.startswith("noise/")]) <= 2
    assert len(rep.replicate) <= 2


def test_fewer_than_four_seeds_is_not_checked(tmp_path: Path) -> None:
    result = compare([_experiment(tmp_path / "mr", 3, 3, 0, seeds=range(3))], out=tmp_path / "out")
    assert result.replication[WIDE] is None
    doc = json.loads((tmp_path / "out" / "headline.json").read_text())
    assert doc["variants"][0]["replication"] is None and "4+" in doc["variants"][0]["replication_note"]
    assert "split-half" not in (tmp_path / "out" / "headline.txt").read_text()


def test_odd_seed_count_puts_the_extra_seed_in_the_second_half() -> None:
    runs = [Run(Path(f"/r/{v}{s}"), "finished", v, s, {"m": float(s) + 10 * (v == "w")}) for v in "bw"
            for s in range(5)]  # fmt: skip
    rep = split_half([r for r in runs if r.variant == "b"], [r for r in runs if r.variant == "w"])
    assert rep.first_seeds == ([0, 1], [0, 1]) and rep.second_seeds == ([2, 3, 4], [2, 3, 4])
