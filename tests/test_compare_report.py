"""report.html: self-contained, lists failed runs as failed, sorts effects by |effect size|, says which plots
were skipped, and renders in headless Chromium without console errors."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from harness.compare import compare
from tests.helpers import BASE, PLANTED, WIDE, chromium, make_experiment, write_record


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


def test_report_renders_in_headless_chromium(report: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")
    stat = pytest.importorskip("PIL.ImageStat")
    executable = chromium()
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
            page.goto(report.as_uri())
            assert page.locator("img").count() == 5
            assert all(page.evaluate("[...document.images].map(i => i.naturalWidth > 0)"))
            png = page.screenshot(full_page=False)
        finally:
            browser.close()
    assert errors == []
    pixels = image.open(io.BytesIO(png)).convert("L")
    assert max(stat.Stat(pixels).stddev) > 10, "screenshot is blank"
