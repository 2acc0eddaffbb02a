"""How long the HTML email is on a screen: its height in CSS pixels in headless Chromium.

    python benchmarks/email_height.py [--papers 10] [--format html|markdown]

Renders the invented sample digest (tests/sample_digest.py: our own text) with the packaged templates and
measures the document at 375 px (a phone) and 1024 px (a laptop), in light and dark mode. "Screens" divides the
height by 667 px, an iPhone SE's viewport: the ten-second scan the design aims for.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sample_digest import SAMPLE_LINKS, SAMPLE_NOW, sample_plan  # noqa: E402

from digest.render import make_environment, render_email  # noqa: E402

PHONE_SCREEN = 667
_SCRIPT = """<script>window.addEventListener("load", function () {
  var doc = document.getElementById("mail").contentDocument;
  document.getElementById("result").textContent = JSON.stringify({height: doc.documentElement.scrollHeight});
});</script>"""


def measure(document: str, width: int, dark: bool, folder: Path) -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    page = folder / f"page-{width}-{int(dark)}.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{margin:0}iframe{border:0}</style></head>'
        f'<body><iframe id="mail" width="{width}" height="100" srcdoc="{html.escape(document, quote=True)}">'
        f'</iframe><pre id="result">pending</pre>{_SCRIPT}</body></html>',
        encoding="utf-8",
    )
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={folder}/p"]
    if dark:
        flags.append("--force-dark-mode")
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, flags=re.S)
    if not found or found.group(1) == "pending":
        raise SystemExit("the measuring script did not run")
    return int(json.loads(html.unescape(found.group(1)))["height"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10)
    parser.add_argument("--format", choices=("html", "markdown"), default="html")
    args = parser.parse_args()
    rendered = render_email(
        make_environment(None), sample_plan(args.papers, format=args.format), now=SAMPLE_NOW, links=SAMPLE_LINKS
    )
    print(f"{args.papers} papers, {args.format} email; text part: {len(rendered.text.splitlines())} lines")
    with tempfile.TemporaryDirectory() as folder:
        for width in (375, 1024):
            for dark in (False, True):
                height = measure(rendered.html, width, dark, Path(folder))
                mode = "dark" if dark else "light"
                print(f"  {width:>4} px {mode:<5}: {height:>6} px = {height / PHONE_SCREEN:4.1f} phone screens")


if __name__ == "__main__":
    main()
