"""Why a paper was picked: authors and categories as interests, and explanations that tell something new
(digest.rank.people, digest.rank.explain, through the ranking engine)."""

from __future__ import annotations

import pytest

from digest.paper import Paper
from digest.rank import build_model, rank
from digest.rank.explain import TEASER_CHARS, WHY_LIMIT, Facts, clause, quotable, sentences, why_lines
from digest.rank.people import matching_authors, matching_categories, name_key, same_person
from digest.render.text import teaser
from digest.subscribers import Interests


@pytest.mark.parametrize(
    "written",
    ["Ada Lovelace", "A. Lovelace", "LOVELACE, Ada", "Ada K. Lovelace", "Àda Lovelace", "A Lovelace", "Lovelace, A."],
)
def test_a_name_survives_initials_accents_case_and_order(written: str) -> None:
    assert matching_authors([name_key("Ada Lovelace")], [written]) == [written]  # type: ignore[list-item]


@pytest.mark.parametrize("written", ["Adam Lovelace", "B. Lovelace", "Ada Byron", "Lovelace-Smith, Ada"])
def test_other_people_do_not_match(written: str) -> None:
    assert matching_authors([name_key("Ada Lovelace")], [written]) == []  # type: ignore[list-item]


def test_particles_and_hyphens_stay_in_the_surname() -> None:
    assert name_key("Ludwig van Beethoven") == ("van beethoven", ("ludwig",))
    wanted = name_key("Jean-Pierre Serre")
    assert wanted is not None and same_person(wanted, name_key("J.-P. Serre") or ("", ()))
    assert name_key("—") is None


def test_categories_match_exactly_or_by_archive_ignoring_case() -> None:
    assert matching_categories(["cs.LG"], ["cs.lg", "stat.ML"]) == ["cs.lg"]
    assert matching_categories(["math"], ["math.PR", "math-ph", "cs.DS"]) == ["math.PR"]
    assert matching_categories(["astro-ph"], ["astro-ph.GA", "astro-ph"]) == ["astro-ph.GA", "astro-ph"]
    assert matching_categories(["cs.LG"], ["cs.LGX", "cs"]) == []


def test_profile_validation_of_authors_and_categories() -> None:
    Interests(authors=("Ada Lovelace",), categories=("cs.LG", "math", "astro-ph.GA"))
    with pytest.raises(ValueError, match="not an arXiv category"):
        Interests(categories=("cs LG",))
    with pytest.raises(ValueError, match="not a name"):
        Interests(authors=("1234",))


PAPERS = [
    Paper(
        title="Graph networks for chemistry",
        abstract="We learn on molecules.",
        authors=("A. Lovelace", "C. Babbage"),
        categories=("cs.LG",),
        id="p1",
    ),
    Paper(
        title="Star formation histories",
        abstract="We date stars in dwarf galaxies.",
        categories=("astro-ph.GA",),
        id="p2",
    ),
    Paper(
        title="Sorting in linear time",
        abstract="Integers sort fast with radix methods.",
        categories=("cs.DS",),
        id="p3",
    ),
    Paper(title="Lattice gauge theory", abstract="We simulate quarks on a lattice.", categories=("hep-lat",), id="p4"),
]


def test_an_author_or_a_category_alone_is_a_profile_and_is_explained() -> None:
    model = build_model(PAPERS)
    by_author = rank(model, PAPERS, Interests(authors=("Ada Lovelace",)))
    assert [(s.paper.id, s.why) for s in by_author] == [("p1", "by A. Lovelace")]
    by_category = rank(model, PAPERS, Interests(categories=("astro-ph",)))
    assert [(s.paper.id, s.why) for s in by_category] == [("p2", "in astro-ph.GA")]


def test_a_followed_author_lifts_a_paper_above_keyword_matches() -> None:
    model = build_model(PAPERS)
    picks = rank(model, PAPERS, Interests(keywords=("sorting",), authors=("Charles Babbage",)), max_papers=2)
    assert [s.paper.id for s in picks] == ["p1", "p3"]
    assert picks[0].why == "by C. Babbage"
    assert picks[1].why == 'title matches "sorting"'


def test_an_excluded_author_drops_their_papers_whatever_else_matches() -> None:
    model = build_model(PAPERS)
    interests = Interests(keywords=("graph networks", "sorting"), authors=("Charles Babbage",))
    assert [s.paper.id for s in rank(model, PAPERS, interests, max_papers=4)][:2] == ["p1", "p3"]
    # Written another way than on the paper ("A. Lovelace"): the same person, so p1 goes, followed co-author or not.
    never = interests.model_copy(update={"exclude_authors": ("LOVELACE, Àda",)})
    assert "p1" not in [s.paper.id for s in rank(model, PAPERS, never, max_papers=4)]
    unrelated = interests.model_copy(update={"exclude_authors": ("Bea Lovelace",)})
    assert "p1" in [s.paper.id for s in rank(model, PAPERS, unrelated, max_papers=4)]
    with pytest.raises(ValueError, match="not a name"):
        Interests(exclude_authors=("42",))


def test_reasons_vary_across_a_digest_and_there_is_no_filler() -> None:
    liked = "Oversmoothing in deep graph networks"
    lines = why_lines(
        [
            Facts(liked=liked),
            Facts(liked=liked, concept="graph neural networks"),
            Facts(liked=liked, in_abstract=("message passing",)),
            Facts(liked=liked),
            Facts(),
        ]
    )
    assert lines[0] == f'close to "{liked}", which you liked'
    assert lines[1] == 'closest in meaning to "graph neural networks"'  # the liked paper was said already
    assert lines[2] == 'mentions "message passing"'
    assert lines[3] == lines[0]  # nothing else to say: the strongest reason once more
    assert lines[4] == ""  # never "related to your interests"


def test_a_quote_is_never_what_the_teaser_shows_and_is_cut_at_a_clause() -> None:
    abstract = (
        "Graph networks oversmooth when they are deep. "
        + "We study why this happens in many settings and report it. " * 4
        + "Our residual scheme, which rescales messages at every layer, keeps node features apart even at "
        "a depth of one hundred layers, and it costs nothing."
    )
    parts = sentences(abstract)
    shown = teaser(abstract)
    allowed = quotable(abstract, parts)
    for sentence, may in zip(parts, allowed, strict=True):
        if sentence.rstrip(".") in shown or sentence in shown:
            assert not may
    assert allowed[-1] and not allowed[0]
    cut = clause(parts[-1], 90)
    assert cut == "Our residual scheme, which rescales messages at every layer…"
    assert clause("A short sentence.", 90) == "A short sentence."
    assert clause("x" * 200, 90) is None  # no clause boundary: no stub quote
    line = why_lines([Facts(in_title=("graph networks",), sentence=parts[-1])])[0]
    assert line.startswith('title matches "graph networks"; key sentence: "Our residual scheme')
    assert len(line) <= WHY_LIMIT


def test_the_teaser_length_agrees_with_the_email() -> None:
    text = "word " * 200
    assert len(teaser(text)) <= TEASER_CHARS
    assert len(teaser(text)) > TEASER_CHARS - 20


def test_a_keyword_in_the_text_is_always_said_and_a_new_reason_joins_it() -> None:
    lines = why_lines(
        [
            Facts(in_title=("message passing",)),
            Facts(in_title=("message passing",), liked="Residual gates"),
            Facts(in_title=("message passing",), liked="Residual gates", categories=("cs.LG",)),
        ]
    )
    assert lines == [
        'title matches "message passing"',
        'title matches "message passing"; close to "Residual gates", which you liked',
        'title matches "message passing"; in cs.LG',
    ]
