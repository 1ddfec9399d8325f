"""The report reads well: constant and missing metrics in their own short section, the main effects table
capped at the top effects, count error bars that never go below zero, learning curves per variant (mean and a
band over seeds), a caption for lineage's "other", and a legend on the curve tuning plot. Checked in the HTML,
in the drawn figures, and rendered in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from harness.compare import compare
from harness.compare.plots import PlotSpec, draw
from harness.compare.report import TOP_EFFECTS
from tests.helpers import chromium, write_record

WIDE = "model.widen.mixed3b_5x5=8"


def _experiment(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for side, variant in enumerate(("base", WIDE)):
        for seed in range(4):
            metrics = {f"probe/m{i}": float(rng.normal(i * side * 0.1, 1)) for i in range(40)}
            # counts with sd > mean: mean - sd would fall below zero
            metrics.update({f"curves/{layer}/detectors": float([0, 0, 0, 6][seed] + side) for layer in ("a", "b")})
            if side:
                metrics["only/in_variant"] = 1.0
                metrics.update({"lineage/mixed3b_5x5/added/other": 5.0, "lineage/mixed3b_5x5/added/dead": 3.0})
            epochs = [{"epoch": e, "val/acc": 0.3 + 0.1 * e + 0.02 * seed + 0.05 * side,
                       "train/loss_epoch": 2.0 - 0.3 * e + 0.05 * seed} for e in range(5)]  # fmt: skip
            write_record(root, f"{variant}-{seed}", variant=variant, seed=seed, metrics=metrics,
                         widen={"mixed3b_5x5": 8 * side}, params=1000 + 100 * side, epochs=epochs)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _experiment(tmp_path_factory.mktemp("mr"))
    return compare([root], out=root / "compare").out_dir / "report.html"


def test_constant_and_missing_metrics_have_their_own_section(report: Path) -> None:
    page = report.read_text()
    special = page.split("Constant within each side, or missing on one side")[1].split("<h4>")[0]
    main = page.split("effects by |effect size|")[1]
    assert "model/params/total" in special and "only/in_variant" in special and "missing in baseline" in special
    assert "model/params/total" not in main and "only/in_variant" not in main


def test_main_table_shows_the_top_effects_with_q(report: Path) -> None:
    main = report.read_text().split("effects by |effect size|")[1]
    rows = re.findall(r'<tr class="[a-z]*"><td class="text">([^<]+)</td>', main)
    assert len(rows) == TOP_EFFECTS and "q (BH)" in main
    assert f"top {TOP_EFFECTS} of " in report.read_text() and "effects.csv" in report.read_text()
    effects = (report.parent / "effects.csv").read_text()
    assert effects.count("\n") > TOP_EFFECTS + 3  # the full list stays in the CSV


def test_count_error_bars_stay_above_zero() -> None:
    spec = PlotSpec("curves", "Curve detectors", "", "detectors", "curves/<layer>/detectors")
    series = {"base": {"a": [0.0, 0.0, 0.0, 6.0], "b": [1.0, 1.0, 1.0, 7.0]}}
    fig = draw(spec, series, {}, {})
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0
    lows = [seg[:, 1].min() for coll in ax.collections for seg in getattr(coll, "get_segments", list)()]
    assert lows and min(lows) >= 0
    negative = {"base": {"a": [-3.0, 1.0, 2.0]}}  # a metric that can be negative keeps its full bars
    lows = [s[:, 1].min() for c in draw(spec, negative, {}, {}).axes[0].collections
            for s in getattr(c, "get_segments", list)()]  # fmt: skip
    assert min(lows) == pytest.approx(-(7.0**0.5))  # mean 0 - sd, unclipped


def test_learning_curves_and_lineage_caption(report: Path) -> None:
    page = report.read_text()
    assert 'data-plot="learning_curves"' in page and (report.parent / "plots" / "learning_curves.png").is_file()
    assert "other: active and not a copy" in page


def test_tuning_plot_has_a_legend() -> None:
    import torch

    from harness.probes.curves import tuning_plot

    class Stim:
        orientations = torch.arange(0, 360, 15.0)
        line_orientations = torch.arange(0, 180, 15.0)

    rng = np.random.default_rng(0)
    stats = {"mixed3b": {"selectivity": np.array([3.0]), "detector": np.array([True]), "peak": np.array([1.0]),
                         "line_tuning": rng.random((12, 1)), "tuning": rng.random((24, 1)),
                         "preferred_radius": np.array([5.0])}}  # fmt: skip
    img = tuning_plot(stats, Stim())
    strip = img[-12:].reshape(-1, 3).astype(int)
    blue = ((strip[:, 2] > 150) & (strip[:, 0] < 80)).sum()
    orange = ((strip[:, 0] > 200) & (strip[:, 2] < 60)).sum()
    assert blue > 10 and orange > 10  # the key to both lines sits in the bottom strip


def test_report_in_headless_chromium_has_curves_and_no_negative_count_axis(report: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = chromium()
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(report.as_uri())
            curves = page.locator('figure[data-plot="learning_curves"] img')
            assert curves.count() == 1 and curves.evaluate("i => i.naturalWidth > 400")
            ymins = page.evaluate("[...document.querySelectorAll('figure[data-ymin]')].map(f => +f.dataset.ymin)")
            counts = page.evaluate("[...document.querySelectorAll('figure[data-plot=curves],"
                                   "figure[data-plot=lineage]')].map(f => +f.dataset.ymin)")  # fmt: skip
            assert len(counts) == 2 and all(y >= 0 for y in counts) and len(ymins) >= 2
            assert page.get_by_text("other: active and not a copy").count() == 1
            curves.scroll_into_view_if_needed()
            curves.screenshot(path=str(tmp_path / "learning_curves.png"))
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert (tmp_path / "learning_curves.png").stat().st_size > 5000
