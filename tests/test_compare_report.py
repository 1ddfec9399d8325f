"""report.html and its plots (harness.compare.report, harness.compare.plots): self-contained, lists failed runs as
failed, sorts effects by |effect size|, says which plots were skipped, keeps constant and missing metrics in their
own short section, caps the main effects table at the top effects, draws count error bars that never go below
zero and learning curves per variant (mean and a band over seeds), captions lineage's "other", and renders in
headless Chromium without console errors."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from harness.compare import compare
from harness.compare.plots import PlotSpec, draw
from harness.compare.report import TOP_EFFECTS
from tests.helpers import BASE, PLANTED, WIDE, chromium, make_experiment, write_record

NOISY_WIDE = "model.widen.mixed3b_5x5=8"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_experiment(tmp_path_factory.mktemp("multirun"))
    return compare([root]).out_dir / "report.html"


def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text()
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no external resources"
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) == 5 and all(src.startswith("data:image/png;base64,") for src in images)
    assert len(list((report.parent / "plots").glob("*.png"))) == 5


def test_report_lists_failed_run_with_error(report: Path) -> None:
    page = report.read_text()
    row = re.search(r'<tr class="failed">(.*?)</tr>', page, re.S)
    assert row and "failed" in row[1] and "RuntimeError: CUDA out of memory" in row[1]
    assert '<tr class="running">' in page


def test_effects_table_sorted_by_abs_effect(report: Path) -> None:
    table = report.read_text().split("Effects against the baseline")[1]
    metrics = re.findall(r'<tr class="[a-z]*"><td class="text">([^<]+)</td>', table)
    # the headline family (planted) first, then config facts and constant metrics (params), then the exploratory
    # rest by |effect size|: cka (-0.1 over sd 0.05) > null
    order = [metrics.index(m) for m in (PLANTED, "model/params/total", "cka/mixed3a/cka_to_reference", "null/a")]
    assert order == sorted(order)
    assert re.search(rf'<tr class="beyond"><td class="text">{re.escape(PLANTED)}</td>', table)


def test_absent_plots_are_skipped_and_said_so(tmp_path: Path) -> None:
    for i, variant in enumerate((BASE, WIDE)):
        write_record(tmp_path / "mr", str(i), variant=variant, widen={"b": i}, metrics={"val/acc": 0.5 + 0.1 * i})
    result = compare([tmp_path / "mr"], out=tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert all(p.skipped for p in result.plots) and "<img" not in page
    assert "Curve detectors per layer: skipped (no curves/&lt;layer&gt;/detectors metrics" in page
    assert "skipped (no val/acc/&lt;class&gt; metrics" in page
    assert not list((tmp_path / "out" / "plots").glob("*.png"))


@contextmanager
def _in_chromium(report: Path, errors: list[str]) -> Iterator:
    """The report opened in headless Chromium; console errors, page errors and failed requests go to ``errors``."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = chromium()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
            page.goto(report.as_uri())
            yield page
        finally:
            browser.close()


def test_report_renders_in_headless_chromium(report: Path) -> None:
    image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    stat = pytest.importorskip("PIL.ImageStat")
    errors: list[str] = []
    with _in_chromium(report, errors) as page:
        assert page.locator("img").count() == 5
        assert all(page.evaluate("[...document.images].map(i => i.naturalWidth > 0)"))
        png = page.screenshot(full_page=False)
    assert errors == []
    pixels = image.open(io.BytesIO(png)).convert("L")
    assert max(stat.Stat(pixels).stddev) > 10, "screenshot is blank"


def _noisy_experiment(root: Path) -> Path:
    """40 metrics, 4 seeds a side; counts whose sd exceeds their mean; lineage and learning curves."""
    rng = np.random.default_rng(1)
    for side, variant in enumerate(("base", NOISY_WIDE)):
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
def noisy_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _noisy_experiment(tmp_path_factory.mktemp("mr"))
    return compare([root], out=root / "compare").out_dir / "report.html"


def test_constant_and_missing_metrics_have_their_own_section(noisy_report: Path) -> None:
    page = noisy_report.read_text()
    special = page.split("Constant within each side, or missing on one side")[1].split("<h4>")[0]
    main = page.split("effects by |effect size|")[1]
    assert "model/params/total" in special and "only/in_variant" in special and "missing in baseline" in special
    assert "model/params/total" not in main and "only/in_variant" not in main


def test_main_table_shows_the_top_effects_with_q(noisy_report: Path) -> None:
    main = noisy_report.read_text().split("effects by |effect size|")[1]
    rows = re.findall(r'<tr class="[a-z]*"><td class="text">([^<]+)</td>', main)
    assert len(rows) == TOP_EFFECTS and "q (BH)" in main
    assert f"top {TOP_EFFECTS} of " in noisy_report.read_text() and "effects.csv" in noisy_report.read_text()
    effects = (noisy_report.parent / "effects.csv").read_text()
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


def test_learning_curves_and_lineage_caption(noisy_report: Path) -> None:
    page = noisy_report.read_text()
    assert 'data-plot="learning_curves"' in page and (noisy_report.parent / "plots" / "learning_curves.png").is_file()
    assert "other: active and not a copy" in page


def test_report_in_headless_chromium_has_curves_and_no_negative_count_axis(noisy_report: Path, tmp_path: Path) -> None:
    errors: list[str] = []
    with _in_chromium(noisy_report, errors) as page:
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
    assert errors == []
    assert (tmp_path / "learning_curves.png").stat().st_size > 5000
