"""A real headless Chromium renders the emails at phone and desktop widths: no horizontal overflow, every
paper title visible. Screenshots go to the test's temp folder, or to $DIGEST_SCREENSHOTS when it is set.

The email is loaded into an <iframe srcdoc> of the exact width (Chromium's headless window has a minimum
width, an iframe does not), and a script in the outer page measures it and writes the result into the DOM,
which `--dump-dom` prints once the page has loaded.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sample_digest import SAMPLE_LINKS, SAMPLE_NOW, sample_plan

from digest.plan import DigestPlan
from digest.render import make_environment, render_email

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI sets DIGEST_REQUIRE_BROWSER: there a missing browser fails these tests instead of skipping them.
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("DIGEST_REQUIRE_BROWSER"),
    reason="chromium not installed (apt-get install -y chromium)",
)
WIDTHS = (375, 1024)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
LONG_TITLE = "Unbreakable" + "x" * 110 + " And A Very Long URL-Like Word https://example.org/" + "a" * 90

_MEASURE = """
<script>
window.addEventListener("load", function () {
  var frame = document.getElementById("mail"), win = frame.contentWindow, doc = frame.contentDocument;
  var result = {width: win.innerWidth, scrollWidth: doc.documentElement.scrollWidth, titles: []};
  doc.querySelectorAll(%(selector)s).forEach(function (el) {
    var box = el.getBoundingClientRect(), style = win.getComputedStyle(el);
    result.titles.push({text: el.textContent, left: box.left, right: box.right, width: box.width,
      height: box.height, visibility: style.visibility, display: style.display, opacity: style.opacity,
      color: style.color, background: win.getComputedStyle(doc.body).backgroundColor});
  });
  document.getElementById("result").textContent = JSON.stringify(result);
});
</script>
"""


def chromium(tmp_path: Path, *args: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    completed = subprocess.run(
        [CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def measure(tmp_path: Path, document: str, width: int, selector: str) -> dict[str, Any]:
    page = tmp_path / f"measure-{width}.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{margin:0}iframe{border:0;display:block}'
        f'</style></head><body><iframe id="mail" width="{width}" height="8000" '
        f'srcdoc="{html.escape(document, quote=True)}"></iframe><pre id="result">pending</pre>'
        + _MEASURE % {"selector": json.dumps(selector)}
        + "</body></html>",
        encoding="utf-8",
    )
    dom = chromium(tmp_path, "--window-size=1200,900", "--dump-dom", page.as_uri())
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, flags=re.S)
    assert found and found.group(1) != "pending", "the measuring script did not run"
    return json.loads(html.unescape(found.group(1)))


def screenshot(tmp_path: Path, document: str, name: str, width: int, *extra: str) -> Path:
    source = tmp_path / f"{name}.html"
    source.write_bytes(b"\xef\xbb\xbf" + document.encode("utf-8"))  # BOM: the charset meta may sit past 1 KB
    target = tmp_path / f"{name}-{width}.png"
    chromium(tmp_path, f"--window-size={width},2600", f"--screenshot={target}", *extra, source.as_uri())
    assert target.stat().st_size > 10_000, "the screenshot is (nearly) empty"
    keep = os.environ.get("DIGEST_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(target, Path(keep) / target.name)
    return target


def with_long_title(plan: DigestPlan) -> DigestPlan:
    """Worst case for a phone: one title with no break opportunity for 120 characters."""
    first = plan.picks[0]
    return replace(plan, picks=(replace(first, paper=replace(first.paper, title=LONG_TITLE)), *plan.picks[1:]))


@pytest.fixture(scope="module")
def env():  # type: ignore[no-untyped-def]
    return make_environment(None)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("format", "selector"), [("html", ".paper-title"), ("markdown", "h2")])
def test_no_horizontal_overflow_and_every_title_visible(env, tmp_path, width, format, selector) -> None:  # type: ignore[no-untyped-def]
    plan = with_long_title(sample_plan(5, format=format))
    rendered = render_email(env, plan, now=SAMPLE_NOW, links=SAMPLE_LINKS)
    result = measure(tmp_path, rendered.html, width, selector)
    assert result["width"] == width
    assert result["scrollWidth"] <= width, f"horizontal overflow at {width}px: {result['scrollWidth']}px wide"
    titles = [re.sub(r"\s+", " ", t["text"]).strip() for t in result["titles"]]
    expected = [s.paper.title for s in plan.picks]
    assert [t for t in titles if any(e in t for e in expected)] == titles and len(titles) == len(expected)
    for title in result["titles"]:
        assert title["width"] > 0 and title["height"] > 0, title
        assert 0 <= title["left"] and title["right"] <= width, title
        assert title["visibility"] == "visible" and title["display"] != "none" and float(title["opacity"]) > 0.9
        assert title["color"] != title["background"], title


def test_the_phone_layout_actually_switches(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """At 375px the media query makes the column full width: titles use most of the screen."""
    rendered = render_email(env, sample_plan(3), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    phone = measure(tmp_path, rendered.html, 375, ".title")
    desktop = measure(tmp_path, rendered.html, 1024, ".title")
    assert all(t["right"] - t["left"] > 300 for t in phone["titles"])  # 375 minus the narrow gutters
    assert all(500 <= t["right"] - t["left"] <= 560 for t in desktop["titles"])  # inside the 600px column
    assert all(t["left"] > 200 for t in desktop["titles"])  # the column is centred


@pytest.mark.parametrize("width", WIDTHS)
def test_screenshots_of_the_demo_email(env, tmp_path, width) -> None:  # type: ignore[no-untyped-def]
    light = render_email(env, sample_plan(5), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    screenshot(tmp_path, light.html, "demo-html", width)
    screenshot(tmp_path, light.html, "demo-html-dark", width, "--force-dark-mode")
    markdown = render_email(env, sample_plan(5, format="markdown"), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    screenshot(tmp_path, markdown.html, "demo-markdown", width)
    screenshot(tmp_path, markdown.html, "demo-markdown-dark", width, "--force-dark-mode")


def test_cards_keep_their_rounded_corners_and_the_glance_list_links_every_paper(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Collapsed table borders ignore border-radius: the cards must use separate borders to be rounded."""
    rendered = render_email(env, sample_plan(10), now=SAMPLE_NOW, links=SAMPLE_LINKS)
    cards = measure(tmp_path, rendered.html, 375, ".card")
    assert len(cards["titles"]) == 11  # the at-a-glance box and ten papers
    glance = measure(tmp_path, rendered.html, 375, ".glance-title")
    assert [t["text"] for t in glance["titles"]] == [s.paper.title for s in sample_plan(10).picks]
    assert all(0 <= t["left"] and t["right"] <= 375 for t in glance["titles"])
    corners = re.findall(r'class="card"[^>]*style="([^"]*)"', rendered.html)
    assert len(corners) == 11 and all("border-radius: 12px" in c and "border-collapse: separate" in c for c in corners)
