"""One screenshot per report section, for docs/report.md (docs/img/report_<section>.png).

Usage::

    python benchmarks/report_screenshots.py [RUN_DIR] [--out docs/img]

``RUN_DIR`` (default ``runs/default``) is a folder made by ``mechgraph run`` (with no
arguments: the default model on the bundled sample); its report is rewritten, opened in
headless Chromium (Debian's ``chromium``, through Playwright), and each section is saved
as a palette PNG, cut to ``--max-height`` pixels, so that each stays under ~300 KB.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
from pathlib import Path

SECTIONS = ("summary", "trace-viewer", "matrices", "graph", "probe-sweep", "phases")


def _small_png(png: bytes, max_height: int) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    if img.height > max_height:
        img = img.crop((0, 0, img.width, max_height))
    out = io.BytesIO()
    img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(out, "PNG", optimize=True)
    return out.getvalue()


def screenshots(
    run_dir: Path, out_dir: Path, *, max_height: int = 1100, width: int = 1200
) -> list[Path]:
    """Write the report of ``run_dir`` and one PNG per section under ``out_dir``."""
    from playwright.sync_api import sync_playwright

    from mechgraph.report import write_report

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    page_path = write_report(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.set_default_timeout(300_000)
        page.route(
            "**/*",
            lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort(),
        )
        page.goto(page_path.resolve().as_uri())
        page.wait_for_selector("html[data-ready='1']")
        page.add_style_tag(content="header.top { position: static !important; }")
        page.select_option("#trace-select", index=0)
        for ident in SECTIONS:
            png = page.locator(f"section#{ident}").screenshot()
            target = out_dir / f"report_{ident}.png"
            target.write_bytes(_small_png(png, max_height))
            written.append(target)
            print(f"{target}  {target.stat().st_size / 1e3:.0f} KB")
        browser.close()
    print(f"report {page_path.stat().st_size / 1e6:.1f} MB -> {page_path}")
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", nargs="?", default="runs/default", type=Path)
    ap.add_argument("--out", default=Path("docs/img"), type=Path)
    ap.add_argument("--max-height", default=1100, type=int)
    args = ap.parse_args(argv)
    if not (args.run_dir / "store").is_dir():
        print(f"{args.run_dir}: no run folder; make it with `mechgraph run`", file=sys.stderr)
        return 1
    screenshots(args.run_dir, args.out, max_height=args.max_height)
    return 0


if __name__ == "__main__":
    sys.exit(main())
