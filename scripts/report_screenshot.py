"""Screenshot a harness-compare report.html with headless Chromium (the README's picture of the report).

    python scripts/report_screenshot.py multirun/<date>/<time>/compare/report.html docs/images/compare-report.png

Needs playwright (`pip install -e ".[dev]"`) and a Chromium binary (`apt-get install chromium`); the same pair
tests/test_compare_report.py uses to check that the page renders.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def screenshot(report: Path, out: Path, width: int = 1200, height: int = 900) -> None:
    from playwright.sync_api import sync_playwright

    executable = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if executable is None:
        raise SystemExit("error: no chromium binary on PATH (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(report.resolve().as_uri())
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=False)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    screenshot(args.report, args.out, args.width, args.height)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
