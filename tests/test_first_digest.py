"""Issue 17's "done when", end to end through the CLI: from an empty folder, `digest init`, the five real
daily-papers digests into the inbox, `digest ingest`, `digest preview`: every paper in the preview has a link,
whether the arXiv API answers (a local stand-in that knows every title) or cannot be reached (the fallback)."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import pytest
from arxiv_server import ArxivServer, Entry
from cli import digest
from conftest import shared_digests

from digest.ingest import parse_document

KEYWORDS = "diffusion models, language models, reinforcement learning"


def _workspace(tmp_path: Path, api_url: str) -> Path:
    made = digest(
        "init", tmp_path / "mine", "--name", "Ada", "--email", "ada@example.org", "--keywords", KEYWORDS, "-y"
    )
    assert made.returncode == 0, made.stderr
    root = tmp_path / "mine"
    for path in shared_digests():
        shutil.copy(path, root / "inbox" / path.name)
    config = root / "config.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace("[enrich]\n", f'[enrich]\napi_url = "{api_url}"\nmin_interval = 0\n', 1)
    config.write_text(text, encoding="utf-8")
    # A profile that takes many papers, so that the preview holds a good share of the store.
    profile = root / "subscribers" / "ada.toml"
    profile.write_text(
        re.sub(r"(?m)^#? ?max_papers = .*$", "max_papers = 60", profile.read_text(encoding="utf-8")), encoding="utf-8"
    )
    return root


def _preview(root: Path) -> tuple[list[dict[str, object]], str]:
    data = digest("--config", root / "config.toml", "preview", "ada", "--format", "json")
    assert data.returncode == 0, data.stderr
    papers = json.loads(data.stdout)["papers"]
    page = digest("--config", root / "config.toml", "preview", "ada", "--format", "html")
    assert page.returncode == 0, page.stderr
    return papers, page.stdout


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_offline_every_paper_links_an_arxiv_title_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGEST_ENRICH")
    root = _workspace(tmp_path, f"http://127.0.0.1:{_closed_port()}/api/query")
    ingested = digest("--config", root / "config.toml", "ingest")
    assert ingested.returncode == 0, ingested.stderr
    (notice,) = [line for line in ingested.stderr.splitlines() if line.startswith("notice:")]
    assert "cannot connect" in notice and "looked up at the next ingest" in notice
    papers, page = _preview(root)
    assert len(papers) >= 20
    for paper in papers:
        assert paper["url"] is None  # the daily-papers text names no link...
        assert str(paper["link"]).startswith("https://arxiv.org/search/?searchtype=title&query=")  # ...so: a search
    titles = re.findall(r'<a class="paper-title" href="([^"]+)"', page)
    assert len(titles) == len(papers) and all(href.startswith("https://arxiv.org/search/") for href in titles)


def test_online_every_paper_links_its_arxiv_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIGEST_ENRICH")
    files = shared_digests()
    titles = list({p.key: p.title for f in files for p in parse_document(f.read_bytes(), str(f))[0]}.values())
    with ArxivServer([Entry(f"2401.{n:05d}v1", title) for n, title in enumerate(titles)]) as server:
        root = _workspace(tmp_path, server.url)
        ingested = digest("--config", root / "config.toml", "ingest", "--json")
    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout)
    assert report["enriched"] == report["new"] == len(titles) and report["notices"] == []
    papers, page = _preview(root)
    assert len(papers) >= 20
    assert all(re.fullmatch(r"https://arxiv\.org/abs/2401\.\d{5}", str(p["link"])) for p in papers)
    assert page.count('href="https://arxiv.org/pdf/2401.') == len(papers)  # and its PDF
