"""digest/paper.py: how a record becomes a clean Paper, and how we tell that two records are one paper."""

from __future__ import annotations

import pytest

from digest.paper import (
    ArxivId,
    clean_text,
    find_links,
    make_paper,
    normalise_doi,
    parse_arxiv_id,
    title_key,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2403.01234", ArxivId("2403.01234", None)),
        ("2403.01234v2", ArxivId("2403.01234", 2)),
        ("2403.01234V12", ArxivId("2403.01234", 12)),
        ("arXiv:2403.01234v1", ArxivId("2403.01234", 1)),
        ("  2403.01234  ", ArxivId("2403.01234", None)),
        ("0704.0001", ArxivId("0704.0001", None)),  # the first new-style id: four digits after the dot
        ("hep-th/9901001", ArxivId("hep-th/9901001", None)),
        ("hep-th/9901001v3", ArxivId("hep-th/9901001", 3)),
        ("HEP-TH/9901001", ArxivId("hep-th/9901001", None)),
        ("math.AG/0601001", ArxivId("math/0601001", None)),  # the subject class is not part of the id
        ("math.AG/0601001v2", ArxivId("math/0601001", 2)),
        ("cond-mat/0102536", ArxivId("cond-mat/0102536", None)),
    ],
)
def test_parse_arxiv_id_exact(text: str, expected: ArxivId) -> None:
    assert parse_arxiv_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2403",
        "2403.123",
        "2403.012345",
        "1234.5",
        "hep-th/990100",
        "hep-th/99010012",
        "A Title 2403.01234",
        "10.1234/abc",
    ],
)
def test_parse_arxiv_id_rejects_non_ids(text: str) -> None:
    assert parse_arxiv_id(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://arxiv.org/abs/2403.01234v2", ArxivId("2403.01234", 2)),
        ("http://arxiv.org/pdf/2403.01234v1.pdf", ArxivId("2403.01234", 1)),
        ("https://arxiv.org/html/2403.01234", ArxivId("2403.01234", None)),
        ("http://arxiv.org/abs/hep-th/9901001v2", ArxivId("hep-th/9901001", 2)),
        ("https://arxiv.org/abs/math.AG/0601001", ArxivId("math/0601001", None)),
        ("oai:arXiv.org:2405.11111v1", ArxivId("2405.11111", 1)),
        ("see arXiv:2403.01234v3.", ArxivId("2403.01234", 3)),
        ("nothing here", None),
        ("https://example.org/2403.012345", None),
    ],
)
def test_parse_arxiv_id_anywhere(text: str, expected: ArxivId | None) -> None:
    assert parse_arxiv_id(text, anywhere=True) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.1234/ABC.5", "10.1234/abc.5"),
        ("doi:10.1234/abc.5", "10.1234/abc.5"),
        ("https://doi.org/10.1234/abc.5", "10.1234/abc.5"),
        ("http://dx.doi.org/10.1234/abc.5.", "10.1234/abc.5"),
        ("10.1000/a(b)c;", "10.1000/a(b)c"),
        ("no doi", None),
    ],
)
def test_normalise_doi(text: str, expected: str | None) -> None:
    assert normalise_doi(text) == expected


@pytest.mark.parametrize(
    ("variants"),
    [
        [
            "Attention Is All You Need",
            "attention is all you need.",
            "  Attention  is\nall you   NEED!",
            "Attention Is All You Need\u200b",
            "ATTENTION IS ALL YOU NEED",
        ],
        [
            "Schrödinger Bridges",
            'Schr\\"odinger Bridges',
            'Schr\\"{o}dinger Bridges',
            "Schro\u0308dinger Bridges",
            "Schrodinger Bridges",
            "Schr&ouml;dinger Bridges",
        ],
        ["Čech Complexes for Data", "\\v{C}ech Complexes for Data", "Cech Complexes for Data"],
        ["$\\alpha$-Divergence Minimisation", "α-Divergence Minimisation", "\u03b1 divergence minimisation"],
        ["\\textbf{Deep} Learning at Scale", "Deep Learning at Scale", "\\emph{Deep} Learning at Scale"],
        ["ﬁne-tuning with Full-Width Ｌｅｔｔｅｒｓ", "Fine-Tuning with Full-Width Letters"],
        ["“Quoted” Titles Don’t Break", '"Quoted" Titles Don\'t Break', "&ldquo;Quoted&rdquo; Titles Don't Break"],
        ["Fast & Furious Sorting", "Fast &amp; Furious Sorting", "Fast \\& Furious Sorting", "Fast — Furious: Sorting"],
    ],
)
def test_title_key_folds_spelling_variants(variants: list[str]) -> None:
    keys = {title_key(v) for v in variants}
    assert len(keys) == 1, keys
    assert keys.pop()  # never folded to nothing


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Deep Learning", "Deep Learning 2"),
        ("Graph Networks", "Graph Network"),
        ("α-Divergence", "β-Divergence"),
        ("$\\alpha$-Divergence", "$\\beta$-Divergence"),
        ("Attention Is All You Need", "Attention Is Not All You Need"),
    ],
)
def test_title_key_keeps_different_titles_apart(one: str, other: str) -> None:
    assert title_key(one) != title_key(other)


def test_clean_text_folds_control_characters_and_line_breaks() -> None:
    assert clean_text("a\r\nb\rc\nd\x00e\x07f\u200bg\th\u2028i\ufeffj\x85k") == "a b c d e f g h i j k"
    assert clean_text("  padded   and\n\n  spaced  ") == "padded and spaced"
    assert clean_text("<b>literal</b> & kept") == "<b>literal</b> & kept"  # plain text is not HTML
    assert clean_text("e\u0301") == "\u00e9"  # NFC: one é, however it was typed


def test_find_links_in_order_without_duplicates() -> None:
    text = (
        "Code: https://github.com/example/repo. Data at (https://example.org/data), "
        "again https://github.com/example/repo; and http://huggingface.co/x/y."
    )
    assert find_links(text) == [
        "https://github.com/example/repo",
        "https://example.org/data",
        "http://huggingface.co/x/y",
    ]


def test_make_paper_cleans_fields_and_reads_ids() -> None:
    paper = make_paper(
        title="  A\r\nTitle\x07 ",
        abstract="Text with code at https://github.com/example/code.\n",
        authors=[" Ada  Lovelace ", "", "\t"],
        url="https://arxiv.org/abs/2403.01234v2",
        doi="https://doi.org/10.1234/XYZ",
        categories=["cs.LG", " cs.LG ", "", "stat.ML"],
        published="2024-03-01",
    )
    assert paper.title == "A Title"
    assert paper.abstract == "Text with code at https://github.com/example/code."
    assert paper.authors == ("Ada Lovelace",)
    assert (paper.arxiv_id, paper.arxiv_version) == ("2403.01234", 2)
    assert paper.doi == "10.1234/xyz"
    assert paper.categories == ("cs.LG", "stat.ML")
    assert paper.code_links == ("https://github.com/example/code",)
    assert paper.url == "https://arxiv.org/abs/2403.01234v2"


def test_make_paper_explicit_arxiv_id_wins_over_url_and_gives_a_url() -> None:
    paper = make_paper(title="T", abstract="A", arxiv="2403.09999v1")
    assert (paper.arxiv_id, paper.arxiv_version, paper.url) == ("2403.09999", 1, "https://arxiv.org/abs/2403.09999")
    both = make_paper(title="T", abstract="A", arxiv="2403.09999", url="https://arxiv.org/abs/2401.00001")
    assert both.arxiv_id == "2403.09999"


def test_make_paper_does_not_take_an_id_from_a_non_arxiv_url() -> None:
    paper = make_paper(title="T", abstract="A", url="https://example.org/papers/2403.01234")
    assert paper.arxiv_id is None


def test_stable_id_prefers_arxiv_then_doi_then_title() -> None:
    arxiv = make_paper(title="Same Title", abstract="a", arxiv="2403.01234v3", doi="10.1234/x")
    doi = make_paper(title="Same Title", abstract="a", doi="10.1234/X")
    bare = make_paper(title="Same Title", abstract="a")
    assert arxiv.stable_id() == "2403.01234"
    assert doi.stable_id() == "doi:10.1234/x"
    assert bare.stable_id().startswith("t-")
    # The title id ignores spelling variants and versions of the text, so re-reading gives the same id.
    assert make_paper(title="same  title.", abstract="other text").stable_id() == bare.stable_id()
    assert make_paper(title="Another Title", abstract="a").stable_id() != bare.stable_id()
