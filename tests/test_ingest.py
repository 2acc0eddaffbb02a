"""Ingestion through the library (digest.ingest.ingest_sources): real files on disk, a real SQLite store.

The real digests are read from ../shared/ (skipped when absent); every other input is invented here.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import NOW, shared_digests

from digest.ingest import IngestReport, ingest_sources
from digest.store import Store

MB = 1_000_000

# ---- helpers: invented inputs ---------------------------------------------------------------------------

SPACED_HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nbyAK and the research community\n\nMar 14\n\n"
)
COMPACT_HEADER = (
    "Get trending papers in your email inbox once a day!\nGet trending papers in your email inbox!\nSubscribe"
)


def abstract_for(topic: str) -> str:
    return (
        f"We study {topic} with an invented method. The method is simple to implement and works well on "
        f"three invented benchmarks, where it beats every baseline we tried by a wide margin."
    )


def spaced_digest(*entries: tuple[str, str | None]) -> str:
    """The spaced layout: header lines, then title / blank / abstract / blank (abstract None: left out)."""
    body = "".join(f"{title}\n\n" + (f"{abstract}\n\n" if abstract else "") for title, abstract in entries)
    return SPACED_HEADER + body


def compact_digest(*entries: tuple[str, str]) -> str:
    """The compact layout: no blank lines, and `Subscribe` glued to the first title."""
    lines = [line for title, abstract in entries for line in (title, abstract)]
    return COMPACT_HEADER + "\n".join(lines) + "\n"


def rss(*items: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        "<channel><title>Invented</title><link>https://example.org/</link><description>Invented</description>"
        + "".join(items)
        + "</channel></rss>\n"
    )


def ingest(
    store: Store, *paths: Path | str, max_bytes: int = 20 * MB, progress: Callable[[str], None] | None = None
) -> IngestReport:
    return ingest_sources(store, [str(p) for p in paths], max_bytes=max_bytes, clock=lambda: NOW, progress=progress)


def snapshot(store: Store) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    return {p.id or "": (p.title, p.abstract, p.sources) for p in store.list_papers()}


# ---- the real digests -----------------------------------------------------------------------------------


def test_shared_digests_ingest_completely(store: Store) -> None:
    files = shared_digests()
    report = ingest(store, *files)
    assert report.rejected == []
    assert report.files == 5
    assert report.entries == 524
    assert report.new == store.count_papers() == 459
    assert report.duplicates + report.updated == 524 - 459
    papers = store.list_papers()
    assert all(p.title and p.abstract and p.sources for p in papers)
    assert all("\n" not in p.title and len(p.title) < 300 for p in papers)
    assert all(set(p.sources) <= {str(f.resolve()) for f in files} for p in papers)


def test_shared_digests_twice_is_a_no_op(store: Store) -> None:
    files = shared_digests()
    ingest(store, *files)
    before = snapshot(store)
    again = ingest(store, *files)
    assert (again.new, again.updated, again.unchanged_files, again.files) == (0, 0, 5, 5)
    assert again.rejected == []
    assert snapshot(store) == before


@pytest.mark.parametrize("order", ["reversed", "shuffled", "folder"])
def test_shared_digests_in_any_order_give_the_same_store(tmp_path: Path, order: str) -> None:
    files = shared_digests()
    with Store(tmp_path / "sorted.db") as store:
        ingest(store, *files)
        expected = snapshot(store)
    if order == "reversed":
        sources: list[Path | str] = list(reversed(files))
    elif order == "shuffled":
        sources = list(files)
        random.Random(7).shuffle(sources)
        assert sources != files
    else:
        sources = [files[0].parent]  # a folder is expanded to its files
    with Store(tmp_path / f"{order}.db") as store:
        report = ingest(store, *sources)
        assert report.rejected == []
        assert snapshot(store) == expected


# ---- daily-papers text digests --------------------------------------------------------------------------


def test_both_digest_layouts_are_read(store: Store, tmp_path: Path) -> None:
    spaced = tmp_path / "spaced.txt"
    spaced.write_text(
        spaced_digest(
            ("Tiny Robots Learn to Walk", abstract_for("robots")), ("Sorting by Asking Nicely", abstract_for("sorting"))
        ),
        encoding="utf-8",
    )
    compact = tmp_path / "compact.txt"
    compact.write_text(
        compact_digest(
            ("Sorting by Asking Nicely", abstract_for("sorting")), ("Clouds as Graphs", abstract_for("clouds"))
        ),
        encoding="utf-8",
    )
    report = ingest(store, spaced, compact)
    assert report.rejected == []
    assert (report.entries, report.new, report.duplicates) == (4, 3, 1)
    titles = sorted(p.title for p in store.list_papers())
    assert titles == ["Clouds as Graphs", "Sorting by Asking Nicely", "Tiny Robots Learn to Walk"]
    assert store.find_paper("sorting by asking nicely").sources == tuple(  # type: ignore[union-attr]
        sorted([str(spaced.resolve()), str(compact.resolve())])
    )


def test_digest_title_without_abstract_is_reported_with_its_line_and_the_rest_ingested(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "gap.txt"
    path.write_text(
        spaced_digest(
            ("First Complete Paper", abstract_for("the first")),
            ("A Title Left Alone", None),
            ("Second Complete Paper", abstract_for("the second")),
        ),
        encoding="utf-8",
    )
    report = ingest(store, path)
    assert sorted(p.title for p in store.list_papers()) == ["First Complete Paper", "Second Complete Paper"]
    assert len(report.rejected) == 1
    error = report.rejected[0].error
    line = spaced_digest(("First Complete Paper", abstract_for("the first"))).count("\n") + 1
    assert error == f"{path}:{line}: title 'A Title Left Alone' has no abstract; skipped"
    # A file with a bad entry is not remembered: the next run reports it again (and adds nothing new).
    again = ingest(store, path)
    assert len(again.rejected) == 1 and again.new == 0 and again.unchanged_files == 0


def test_digest_text_is_kept_literally_but_control_characters_are_folded(store: Store, tmp_path: Path) -> None:
    title = "Why <b>Bold</b> & <script>alert(1)</script> Stay Literal"
    abstract = "A digest\tis plain\x07 text, so <i>markup</i> is kept as typed.\x0b " + abstract_for("markup")
    path = tmp_path / "literal.txt"
    path.write_bytes(spaced_digest((title, abstract)).replace("\n", "\r\n").encode("utf-8"))
    report = ingest(store, path)
    assert report.rejected == []
    [stored] = store.list_papers()
    assert stored.title == title
    assert stored.abstract.startswith("A digest is plain text, so <i>markup</i> is kept as typed. We study")
    assert not any(ch in stored.abstract + stored.title for ch in "\r\n\t\x07\x0b")


# ---- the same paper from three formats ------------------------------------------------------------------


def test_same_paper_from_digest_feed_and_json_is_stored_once_with_three_sources(store: Store, tmp_path: Path) -> None:
    title = "Learning to Count Sheep with Sparse Autoencoders"
    digest = tmp_path / "digest.txt"
    digest.write_text(spaced_digest((title, abstract_for("sheep"))), encoding="utf-8")
    feed = tmp_path / "listing.xml"
    feed.write_text(
        rss(
            f"<item><title>{title}. (arXiv:2403.01234v2 [cs.LG])</title>"
            "<link>http://arxiv.org/abs/2403.01234</link>"
            f"<description>&lt;p&gt;{abstract_for('sheep')} Version two.&lt;/p&gt;</description>"
            "<dc:creator>Olwen Hardcastle, Piet van der Molen</dc:creator></item>"
        ),
        encoding="utf-8",
    )
    listing = tmp_path / "papers.json"
    listing.write_text(
        json.dumps([{"id": "2403.01234v1", "title": title.upper(), "abstract": abstract_for("sheep")}]),
        encoding="utf-8",
    )
    report = ingest(store, digest, feed, listing)
    assert report.rejected == []
    assert (report.new, report.entries) == (1, 3)
    [stored] = store.list_papers()
    assert stored.sources == tuple(sorted(str(p.resolve()) for p in (digest, feed, listing)))
    assert stored.arxiv_id == "2403.01234" and stored.arxiv_version == 2
    assert stored.abstract.endswith("Version two.")  # the later version's text
    assert stored.title == title
    assert stored.authors == ("Olwen Hardcastle", "Piet van der Molen")
    assert stored.categories == ("cs.LG",)


# ---- bad input ------------------------------------------------------------------------------------------


def test_every_bad_file_is_reported_and_the_good_ones_still_go_in(store: Store, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text(spaced_digest(("The Good Paper", abstract_for("goodness"))), encoding="utf-8")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n\t\n", encoding="utf-8")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(random.Random(1).randbytes(4096))
    truncated = tmp_path / "cut.xml"
    truncated.write_text(rss("<item><title>Fine</title><description>Ok.</description></item>")[:-40])
    html_page = tmp_path / "error.xml"
    html_page.write_text("<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>Gone</body></html>")
    wrong_json = tmp_path / "wrong.json"
    wrong_json.write_text('{"results": 3}')
    missing = tmp_path / "does-not-exist.txt"

    report = ingest(store, empty, blank, garbage, truncated, good, html_page, wrong_json, missing)
    assert [p.title for p in store.list_papers()] == ["The Good Paper"]
    assert report.new == 1
    errors = {Path(r.path).name: r.error for r in report.rejected}
    assert len(report.rejected) == 7
    assert errors["empty.txt"] == f"{empty}: empty file"
    assert errors["blank.txt"] == f"{blank}: empty file"
    assert errors["garbage.bin"] == f"{garbage}: binary file, not a digest, feed or JSON list"
    assert errors["cut.xml"].startswith(f"{truncated}: malformed or truncated XML at line")
    assert errors["error.xml"].startswith(f"{html_page}: is an HTML page, not a feed (page title '404 Not Found')")
    assert errors["wrong.json"].startswith(f"{wrong_json}: JSON must be a list of papers")
    assert errors["does-not-exist.txt"] == f"{missing}: no such file or folder"
    assert all("\n" not in e and "Traceback" not in e for e in errors.values())


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-16-le", b"\xff\xfe"),
        ("utf-16-be", b"\xfe\xff"),
        ("utf-16-le", b""),
        ("utf-16-be", b""),
        ("latin-1", b""),
        ("cp1252", b""),
        ("utf-8", b"\xef\xbb\xbf"),
    ],
    ids=["utf16le-bom", "utf16be-bom", "utf16le-nobom", "utf16be-nobom", "latin1", "cp1252", "utf8-bom"],
)
def test_digest_encodings_decode_correctly(store: Store, tmp_path: Path, encoding: str, bom: bytes) -> None:
    title = "Réseaux Neuronaux Étonnants pour la Mañana"
    abstract = "Un résumé inventé: " + abstract_for("décodage")
    path = tmp_path / "encoded.txt"
    path.write_bytes(bom + spaced_digest((title, abstract)).encode(encoding))
    report = ingest(store, path)
    assert report.rejected == []
    [stored] = store.list_papers()
    assert stored.title == title
    assert stored.abstract == abstract


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_json_and_feed_in_other_encodings(store: Store, tmp_path: Path, encoding: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "list.json").write_bytes(
        json.dumps([{"title": "Über Café Graphs", "abstract": "Ça marche."}], ensure_ascii=False).encode(encoding)
    )
    declared = "UTF-16" if encoding == "utf-16" else "ISO-8859-1"
    feed = rss("<item><title>Señor Kernels</title><description>Año nuevo.</description></item>")
    (folder / "feed.xml").write_bytes(feed.replace("UTF-8", declared).encode(encoding))
    report = ingest(store, folder)
    assert report.rejected == []
    assert sorted(p.title for p in store.list_papers()) == ["Señor Kernels", "Über Café Graphs"]


def test_a_file_over_the_size_limit_is_refused_before_reading(store: Store, tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as handle:  # 50 MB, sparse: no time spent writing it
        handle.truncate(50 * MB)
    small = tmp_path / "small.txt"
    small.write_text(spaced_digest(("Still Ingested", abstract_for("size limits"))), encoding="utf-8")
    report = ingest(store, big, small, max_bytes=20 * MB)
    assert [r.error for r in report.rejected] == [
        f"{big}: larger than the 20 MB limit; raise [ingest] max_file_mb to read it"
    ]
    assert [p.title for p in store.list_papers()] == ["Still Ingested"]


def test_folders_are_read_recursively_skipping_hidden_files(store: Store, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "2024" / "03").mkdir(parents=True)
    (inbox / ".cache").mkdir()
    (inbox / "2024" / "03" / "a.txt").write_text(spaced_digest(("Deep Paper", abstract_for("depth"))))
    (inbox / "top.json").write_text(json.dumps([{"title": "Top Paper", "abstract": "At the top."}]))
    (inbox / ".hidden.txt").write_text("not a digest at all")
    (inbox / ".cache" / "x.txt").write_text("not a digest either")
    report = ingest(store, inbox)
    assert report.rejected == []
    assert report.files == 2
    assert sorted(p.title for p in store.list_papers()) == ["Deep Paper", "Top Paper"]


def test_a_renamed_copy_is_recognised_by_content(store: Store, tmp_path: Path) -> None:
    text = spaced_digest(("Same Bytes", abstract_for("hashing")))
    (tmp_path / "a.txt").write_text(text)
    first = ingest(store, tmp_path / "a.txt")
    (tmp_path / "b.txt").write_text(text)
    second = ingest(store, tmp_path / "b.txt")
    assert (first.new, second.new, second.unchanged_files, second.duplicates) == (1, 0, 1, 1)


def test_progress_callback_names_every_source(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text(spaced_digest(("Paper A", abstract_for("a"))))
    (folder / "b.txt").write_text(spaced_digest(("Paper B", abstract_for("b"))))
    seen: list[str] = []
    progress: Callable[[str], None] = seen.append
    ingest(store, folder, progress=progress)
    assert [Path(s).name for s in seen] == ["a.txt", "b.txt"]


def test_json_report_has_the_documented_keys(store: Store, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(spaced_digest(("Paper A", abstract_for("a"))))
    data = ingest(store, tmp_path / "a.txt", tmp_path / "nope.txt").as_json()
    assert {"files", "new", "updated", "duplicates", "rejected"} <= set(data)
    assert (data["files"], data["new"]) == (1, 1)
    missing = tmp_path / "nope.txt"
    assert data["rejected"] == [{"path": str(missing), "error": f"{missing}: no such file or folder"}]


def test_an_unchanged_file_is_skipped_on_its_stat_and_a_changed_one_is_read(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest.ingest

    first = tmp_path / "a.txt"
    first.write_text(spaced_digest(("Graph pooling by invented means", abstract_for("graph pooling"))))
    reads: list[str] = []
    read_file = digest.ingest.read_file
    monkeypatch.setattr(
        digest.ingest, "read_file", lambda path, limit: reads.append(path.name) or read_file(path, limit)
    )
    assert ingest(store, first).new == 1
    assert ingest(store, first).unchanged_files == 1 and reads == ["a.txt", "a.txt"], (
        "a file changed within RACY_SECONDS is read again: a rewrite in the same clock tick would keep its stat"
    )
    monkeypatch.setattr(digest.ingest, "RACY_SECONDS", 0.0)  # from here on, files count as settled at once
    assert ingest(store, first).unchanged_files == 1
    reads.clear()

    again = ingest(store, first)
    assert reads == [] and again.unchanged_files == 1 and again.duplicates == 1, "not read again"

    # Rewritten in place with the same size: its times change, so it is read (and found new).
    first.write_text(spaced_digest(("Graph pooling by invented mEans", abstract_for("graph pooling"))))
    changed = ingest(store, first)
    assert changed.files == 1 and changed.unchanged_files == 0, "read and parsed as the new content it is"
    assert ingest(store, first).unchanged_files == 1
    assert reads == ["a.txt"], "read once after the change, then skipped again"

    # Touched but not changed: read once, recognised by its content hash, then skipped on its stat again.
    os.utime(first, ns=(1, 1))
    assert ingest(store, first).unchanged_files == 1 and ingest(store, first).unchanged_files == 1
    assert reads == ["a.txt", "a.txt"]
