"""Year: a year of one deployment, day by day, through the production code paths.

    python benchmarks/year.py [--days 365] [--per-day 700] [--subscribers 1000] [--big-day 200000] [--keep]
    python benchmarks/year.py --days 3 --per-day 40 --subscribers 5          # a smoke run: seconds

In a temporary workspace (--workdir; deleted at the end unless --keep): a config.toml (`[delivery] method =
"maildir"`, `[web] base_url` set so every email carries its links), an inbox, and one TOML profile per
subscriber. The clock starts at 2027-01-01 and moves one day at a time through the same seam as DIGEST_NOW
(`clock=` for the library calls, and DIGEST_NOW itself is set, for the code that reads the clock on its own).
Each simulated day, at the times below:

- 06:00 the day's papers are written into the inbox as JSON paper lists (our simple shape, at most 10,000 papers
  a file, so that no file reaches `[ingest] max_file_mb`), then `digest.service.ingest_configured` runs: the
  production ingest of the whole inbox. Files stay in the inbox, as they would: the files of earlier days are
  skipped on their stat. The ingest brings the saved ranking model up to date (digest.model_cache): it encodes
  the new papers, or refits on the 20,000 most recent papers once 5,000 have arrived since the last fit.
- 06:30 a preview of one subscriber's next email, as `digest preview` does it (load the profiles, the templates,
  `digest.preview.preview_digest`), twice: the first as a new process would (the models this process has
  loaded are forgotten, so it reads the saved model from disk: "cold"), the second in the same process ("warm").
- 07:00 `digest.service.send(config, selection="due")`: everybody is due (`0 7 * * *`). Loaded models are
  forgotten first, so the send reads the saved model as a `digest send` or `digest run` process does. Delivery
  goes into a Maildir, whose messages are counted, then deleted.
- 07:05 `digest run --once` (`digest.service.run_cycle` with the feeds refresh `digest run` uses): an ingest with
  nothing new, and nobody due.

Papers: ../shared/eval/arxiv-2012-2017.jsonl (19,902 real arXiv papers, CC0 metadata) is read here and never
copied into the repository. Days take its papers in file order (by date), each with a fresh arXiv-like id
(2701.00001, 2701.00002, ... 99,999 a "month", so they can never collide with a real one), the day as its
published date and made-up authors (the file has none). Once the file runs out (after about 28 days at 700 a day)
new papers are recombined from it, so that the store and its vocabulary keep growing the way real ones do:

- a base paper is drawn at random; the new paper keeps its categories and its number of sentences, and takes its
  first sentence from the base paper or one of two donors of the same primary category, and the other sentences
  shuffled from all three (so the text stays on one topic, and subscribers' interests keep matching);
- the title is the head of the base paper's title up to a linking word ("for", "of", "with", ":" ...) joined to the
  tail of a donor's title from such a word on; titles are unique (by the store's own title key);
- 60 % of the content words (4+ letters, not stop words; in the abstract the lower-case ones, in the title any)
  are swapped for a word of the same category with the same last three letters (frequency-weighted), which makes
  new word pairs at about the rate real papers do;
- new words are coined (half of one word of the category joined to half of another) at the rate of Heaps' law
  fitted on the file (58,443 distinct words in 19,902 papers, exponent 0.5: about 1.5 new words a paper at 20k
  papers, 0.4 at 250k), and each new paper reuses up to two recent coinages of its category, as real new terms
  catch on.

Measured with the model's analyzer (uni+bigrams, English stop words) on this stream from 20,000 to 120,000 papers,
the distinct words stay within 1 % of what Heaps' law fitted on the file predicts (142,830 against 143,508 at
120k papers) and the distinct word pairs reach 86 % of it (4.5 million against 5.3 million, with the pairs'
exponent of 0.86 fitted on the file): the model's vocabulary grows about as a real year's would, a little slower.

Subscribers (--subscribers, default 1,000), one TOML file each, from one random.Random(--seed): every one has a
home category (that of a random paper of day 1); seven in ten have 1-4 keywords (single words and word pairs from
real titles of that category), six in ten have 1-3 liked papers of day 1 (by arXiv id; keywords, likes or both),
one in seven excludes one word of another category's titles; diversity 0, 0.3 or 0.5; one in ten reads Markdown;
max_papers 10, min_score 0.01, everyone daily at `0 7 * * *` UTC.

Reported for days 1, 30, 90, 180 and 365 (those within --days) and the last day, as a Markdown table: the store
(papers; database MB, the SQLite file and its WAL), seconds of each step above, the emails sent, and peak RSS
(ru_maxrss of this process so far: it includes the text pool of this benchmark, printed before the table;
the composing workers are forkserver processes, not counted). --big-day N: after the last day,
one more day with N new papers for the same subscribers (ingest and send). Every day's figures also go to
stderr as the run goes. "load" is the 1-minute load average at the end of the day: above the number of cores, other
processes competed for the CPU and the seconds of that day are inflated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS  # noqa: E402

import digest.model_cache  # noqa: E402
from digest import service  # noqa: E402
from digest.atom import refresh_after_send  # noqa: E402
from digest.config import Config, load_config  # noqa: E402
from digest.paper import title_key  # noqa: E402
from digest.preview import preview_digest  # noqa: E402
from digest.render import make_environment  # noqa: E402
from digest.store import open_store  # noqa: E402
from digest.subscribers import load_subscribers  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "arxiv-2012-2017.jsonl"
START = datetime(2027, 1, 1, tzinfo=UTC)
REPORT_DAYS = (1, 30, 90, 180, 365)
PAPERS_PER_FILE = 10_000
IDS_PER_MONTH = 99_999

# Recombination (see the module docstring).
SWAP_SHARE = 0.6
HEAPS_WORDS, HEAPS_PAPERS, HEAPS_EXPONENT = 58_443, 19_902, 0.5
COINAGES_KEPT = 200  # recent coinages per category that new papers may reuse
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$\\(\[])")
_CONTENT = re.compile(r"(?<![\\\w$^_{])[a-z]{4,}(?![\w}])")  # lower-case words, not LaTeX commands or arguments
_TITLE_WORD = re.compile(r"(?<![\\\w$^_{])[A-Za-z][a-z]{3,}(?![\w}])")
_TOKEN = re.compile(r"\b\w\w+\b")  # the model's token pattern
_LINK = re.compile(r"\s(?:for|of|in|with|on|via|using|from|under|by|towards?|beyond|through)\s|:\s", re.IGNORECASE)
_KEYWORD = re.compile(r"^[a-z][a-z-]{3,}[a-z]$")
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "shi", "gra", "pel", "dor", "qui", "zen", "bal", "tor", "an")


# ---- papers --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    title: str
    abstract: str
    categories: tuple[str, ...]


def read_records(path: Path, limit: int | None) -> list[Record]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(records) >= limit:
                break
            if line.strip():
                item = json.loads(line)
                records.append(Record(item["title"], item["abstract"], tuple(item.get("categories") or ())))
    return records


class Recombiner:
    """New papers from sentences, title halves and words of real ones, plus coined words (module docstring)."""

    def __init__(self, records: Sequence[Record], rng: random.Random) -> None:
        self.rng = rng
        self.records = records
        self.sentences = [tuple(_SENTENCE.split(r.abstract)) for r in records]
        self.by_category: dict[str, list[int]] = defaultdict(list)
        for index, record in enumerate(records):
            self.by_category[record.categories[0] if record.categories else ""].append(index)
        # Per category: content words by their last three letters, one entry per occurrence (frequency-weighted).
        interned: dict[str, str] = {}
        self.words: dict[str, dict[str, list[str]]] = {}
        for category, indices in self.by_category.items():
            by_ending: dict[str, list[str]] = defaultdict(list)
            for index in indices:
                for sentence in self.sentences[index]:
                    for word in _CONTENT.findall(sentence):
                        if word not in ENGLISH_STOP_WORDS:
                            by_ending[word[-3:]].append(interned.setdefault(word, word))
            self.words[category] = dict(by_ending)
        self.known = {token for r in records for token in _TOKEN.findall(f"{r.title} {r.abstract}".lower())}
        self.coined: dict[str, list[str]] = defaultdict(list)
        self.coinages = 0
        self._owed = 0.0

    def _swap(self, category: str, case: bool) -> Callable[[re.Match[str]], str]:
        by_ending = self.words[category]

        def swap(match: re.Match[str]) -> str:
            word = match.group(0)
            lower = word.lower()
            if lower in ENGLISH_STOP_WORDS or self.rng.random() >= SWAP_SHARE:
                return word
            choices = by_ending.get(lower[-3:])
            if not choices:
                return word
            new = self.rng.choice(choices)
            return new.capitalize() if case and word[0].isupper() else new

        return swap

    def _coin(self, category: str) -> str | None:
        endings = list(self.words[category].values())
        if not endings:
            return None
        for _ in range(10):
            first, second = self.rng.choice(self.rng.choice(endings)), self.rng.choice(self.rng.choice(endings))
            word = first[: len(first) // 2] + second[len(second) // 2 :]
            if len(word) >= 5 and word not in self.known:
                self.known.add(word)
                self.coinages += 1
                return word
        return None

    def _place(self, sentences: list[str], word: str) -> None:
        """Put `word` in place of a content word of a random sentence (or at its end)."""
        where = self.rng.randrange(len(sentences))
        matches = list(_CONTENT.finditer(sentences[where]))
        if matches:
            match = self.rng.choice(matches)
            sentences[where] = sentences[where][: match.start()] + word + sentences[where][match.end() :]
        else:
            sentences[where] = f"{sentences[where]} {word}"

    def _title(self, base: int, donor: int) -> str:
        head, tail = self.records[base].title, self.records[donor].title
        links = list(_LINK.finditer(head))
        head = (
            head[: self.rng.choice(links).start()]
            if links
            else " ".join(head.split()[: max(len(head.split()) // 2, 1)])
        )
        links = list(_LINK.finditer(tail))
        tail = (
            tail[self.rng.choice(links).start() :] if links else " " + " ".join(tail.split()[len(tail.split()) // 2 :])
        )
        return " ".join(f"{head}{tail}".split())

    def paper(self, papers_so_far: int, titles: set[str]) -> tuple[str, str, tuple[str, ...]]:
        """(title, abstract, categories) of the next new paper; `papers_so_far` sets the rate of new words."""
        rng = self.rng
        base = rng.randrange(len(self.records))
        categories = self.records[base].categories
        category = categories[0] if categories else ""
        peers = self.by_category[category]
        donors = [base, *rng.sample(peers, min(2, len(peers)))]
        rest = [s for d in dict.fromkeys(donors) for s in self.sentences[d][1:]]
        rng.shuffle(rest)
        sentences = [self.sentences[rng.choice(donors)][0], *rest[: max(len(self.sentences[base]) - 1, 1)]]
        swap = self._swap(category, case=False)
        sentences = [_CONTENT.sub(swap, s) for s in sentences]
        n = max(papers_so_far, HEAPS_PAPERS)  # below the file's size, its real papers bring the new words
        self._owed += HEAPS_EXPONENT * HEAPS_WORDS * HEAPS_PAPERS**-HEAPS_EXPONENT * n ** (HEAPS_EXPONENT - 1)
        while self._owed >= 1:
            self._owed -= 1
            word = self._coin(category)
            if word is not None:
                self._place(sentences, word)
                self.coined[category].append(word)
                del self.coined[category][:-COINAGES_KEPT]
        for _ in range(2):
            if self.coined[category] and rng.random() < 0.7:
                self._place(sentences, rng.choice(self.coined[category]))
        title_swap = self._swap(category, case=True)
        for attempt in range(50):
            title = self._title(base, rng.choice(donors[1:] or donors) if attempt < 25 else rng.choice(peers))
            title = _TITLE_WORD.sub(title_swap, title)
            if title_key(title) not in titles:
                break
        else:  # only with a tiny pool (--real-papers): number the title
            title = next(f"{title} ({n})" for n in range(2, 1_000_000) if title_key(f"{title} ({n})") not in titles)
        titles.add(title_key(title))
        return title, " ".join(sentences), categories


class Papers:
    """The stream of new papers, day after day: the real file first, then recombined papers."""

    def __init__(self, records: list[Record], seed: int) -> None:
        self.records = records
        self.rng = random.Random(seed)
        self.issued = 0
        self.real = 0
        self.recombined = 0
        self.titles = {title_key(r.title) for r in records}
        self.names = [
            "".join(self.rng.choice(_SYLLABLES) for _ in range(self.rng.randint(2, 4))).capitalize() for _ in range(500)
        ]
        self._recombiner: Recombiner | None = None

    def prepare(self, total: int) -> None:
        """Build the recombination pools now (outside any timed step) when the run will need them."""
        if total > len(self.records):
            self._recombiner = self._recombiner or Recombiner(self.records, random.Random(self.rng.random()))

    def next_id(self) -> str:
        block, number = divmod(self.issued, IDS_PER_MONTH)
        self.issued += 1
        return f"{27 + block // 12:02d}{block % 12 + 1:02d}.{number + 1:05d}"

    def take(self, count: int, day: date) -> list[dict[str, Any]]:
        papers = []
        for _ in range(count):
            if self.real < len(self.records):
                record = self.records[self.real]
                title, abstract, categories = record.title, record.abstract, record.categories
                self.real += 1
            else:
                self.prepare(len(self.records) + 1)
                assert self._recombiner is not None
                title, abstract, categories = self._recombiner.paper(self.issued, self.titles)
                self.recombined += 1
            identifier = self.next_id()
            authors = [
                f"{self.rng.choice('ABCDEFGHIJKLMNOPRSTVWY')}. {self.rng.choice(self.names)}"
                for _ in range(self.rng.randint(1, 6))
            ]
            papers.append(
                {
                    "id": identifier,
                    "title": title,
                    "abstract": abstract,
                    "authors": authors,
                    "categories": list(categories),
                    "url": f"https://arxiv.org/abs/{identifier}",
                    "published": day.isoformat(),
                }
            )
        return papers

    @property
    def coinages(self) -> int:
        return self._recombiner.coinages if self._recombiner else 0


def write_papers(path: Path, papers: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps(papers, ensure_ascii=False), encoding="utf-8")


def write_day(papers: Papers, inbox: Path, count: int, day: date) -> None:
    """The day's papers as JSON paper lists, PAPERS_PER_FILE at most per file (made and written a file at a time)."""
    for part, start in enumerate(range(0, count, PAPERS_PER_FILE), start=1):
        batch = papers.take(min(PAPERS_PER_FILE, count - start), day)
        name = f"{day.isoformat()}.json" if count <= PAPERS_PER_FILE else f"{day.isoformat()}-{part:03d}.json"
        write_papers(inbox / name, batch)


# ---- the workspace -------------------------------------------------------------------------------------------


def write_config(folder: Path) -> Path:
    for name in ("inbox", "subscribers", "templates"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(
        '[paths]\ninbox = "inbox"\nsubscribers = "subscribers"\ntemplates = "templates"\n'
        'database = "var/digest.db"\nfeeds = "var/feeds"\n'
        '[web]\nbase_url = "https://digest.example.org"\n'
        '[delivery]\nmethod = "maildir"\nmaildir = "var/maildir"\n'
        # Everyone subscribes on day 1 and gets a digest that morning (else the first comes on day 2).
        "[schedule]\nwelcome_digest = true\n",
        encoding="utf-8",
    )
    return path


def title_phrases(titles: Sequence[str]) -> list[str]:
    """Keywords a reader of these titles might type: single words and adjacent pairs of content words."""
    phrases: set[str] = set()
    for title in titles:
        words = [w.strip(".,:;()?!'\"").lower() for w in title.split()]
        words = [w if _KEYWORD.match(w) and w not in ENGLISH_STOP_WORDS else "" for w in words]
        phrases.update(w for w in words[:4] if w)
        phrases.update(f"{a} {b}" for a, b in zip(words, words[1:], strict=False) if a and b)
    return sorted(phrases)


def toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"  # JSON strings are TOML strings


def write_profiles(folder: Path, count: int, first_day: list[dict[str, Any]], records: list[Record], seed: int) -> None:
    rng = random.Random(seed + 1)
    titles: dict[str, list[str]] = defaultdict(list)
    for record in records:
        titles[record.categories[0] if record.categories else ""].append(record.title)
    phrases = {category: title_phrases(t) for category, t in titles.items()}
    everything = sorted({p for values in phrases.values() for p in values})
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for paper in first_day:
        by_category[paper["categories"][0] if paper["categories"] else ""].append(paper)
    for n in range(count):
        seed_paper = rng.choice(first_day)
        home = seed_paper["categories"][0] if seed_paper["categories"] else ""
        own = phrases.get(home) or everything
        lines = [
            f'name = "Reader {n}"',
            f'email = "reader{n:05d}@example.org"',
            f'format = "{"markdown" if n % 10 == 9 else "html"}"',
            'schedule = "0 7 * * *"',
            'timezone = "UTC"',
            "max_papers = 10",
            "min_score = 0.01",
            f"diversity = {(0.0, 0.3, 0.5)[n % 3]}",
            "[interests]",
        ]
        kind = n % 10
        if kind < 7:
            lines.append(f"keywords = {toml_list(rng.sample(own, min(rng.randint(1, 4), len(own))))}")
        if kind >= 4:
            peers = [p for p in by_category[home] if p is not seed_paper]
            liked = [seed_paper, *rng.sample(peers, min(rng.randint(0, 2), len(peers)))]
            lines.append(f"papers = {toml_list([p['id'] for p in liked])}")
        if n % 7 == 0:
            other = phrases[rng.choice(sorted(c for c in phrases if c != home) or [home])]
            single = [p for p in other if " " not in p] or everything
            lines.append(f"exclude = {toml_list([rng.choice(single)])}")
        (folder / f"reader{n:05d}.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---- one day -------------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def database_mb(config: Config) -> float:
    path = config.paths.database
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


@contextmanager
def digest_now(moment: datetime) -> Iterator[Callable[[], datetime]]:
    """The clock at `moment` for the library calls (clock=) and for anything that reads DIGEST_NOW itself."""
    previous = os.environ.get("DIGEST_NOW")
    os.environ["DIGEST_NOW"] = moment.isoformat()
    try:
        yield lambda: moment
    finally:
        if previous is None:
            os.environ.pop("DIGEST_NOW", None)
        else:
            os.environ["DIGEST_NOW"] = previous


def forget_models() -> None:
    """Forget the models this process loaded: the next step reads the saved model from disk, as a new `digest
    preview` or `digest send` process does."""
    digest.model_cache.forget_loaded_models()


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def ingest(config: Config, moment: datetime) -> float:
    def run() -> Any:
        with open_store(config) as store:
            return service.ingest_configured(store, config, clock)

    with digest_now(moment) as clock:
        seconds, report = timed(run)
    if report.rejected:
        raise RuntimeError(f"ingest rejected: {report.rejected[:3]}")
    return seconds


def preview(config: Config, subscriber: str, moment: datetime) -> tuple[float, float, int]:
    """Seconds of a cold then a warm preview (what `digest preview SUBSCRIBER` does), and the papers it holds."""

    def run() -> Any:
        profile = load_subscribers(config.paths.subscribers).get(subscriber)
        env = make_environment(config.paths.templates)
        with open_store(config) as store:
            store.subscriber_state(profile.id)
            return preview_digest(store, config, env, profile, clock())

    forget_models()
    with digest_now(moment) as clock:
        cold, _ = timed(run)
        warm, result = timed(run)
    return cold, warm, len(result.composed.plan.picks)


def send(config: Config, moment: datetime) -> tuple[float, int]:
    """Seconds of the due send, and the messages found in the Maildir (which is then deleted)."""
    forget_models()
    with digest_now(moment) as clock:
        seconds, report = timed(lambda: service.send(config, selection="due", clock=clock))
    if report.failed or report.stuck:
        raise RuntimeError(f"send failed: {report.failed[:3]}, stuck: {report.stuck[:3]}")
    new = config.delivery.maildir / "new"
    delivered = sum(1 for _ in new.iterdir()) if new.is_dir() else 0
    if delivered != len(report.sent):
        raise RuntimeError(f"{len(report.sent)} messages sent but {delivered} in the Maildir")
    shutil.rmtree(config.delivery.maildir, ignore_errors=True)
    return seconds, delivered


def run_once(config: Config, moment: datetime) -> float:
    """`digest run --once` when nobody is due: an ingest of the unchanged inbox, no send, the feeds refresh."""
    with digest_now(moment) as clock:
        seconds, report = timed(
            lambda: service.run_cycle(
                config, clock=clock, after_send=lambda c, r: refresh_after_send(c, r, clock=clock)
            )
        )
    if report.errors or report.send is None or report.send.sent or (report.ingest and report.ingest.new):
        raise RuntimeError(f"run --once was not idle: errors {report.errors}, send {report.send}")
    return seconds


@dataclass
class Totals:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, **stages: float) -> None:
        for name, value in stages.items():
            self.seconds[name] += value


def store_papers(config: Config) -> int:
    with open_store(config) as store:
        return store.count_papers()


def simulate(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    wall = time.perf_counter()
    records = read_records(DATA, args.real_papers)
    if not records:
        raise SystemExit(f"no papers in {DATA}")
    papers = Papers(records, args.seed)
    prepared, _ = timed(lambda: papers.prepare(args.days * args.per_day + args.big_day))
    pool_rss = peak_rss_mb()
    config = load_config(write_config(folder))
    totals = Totals()
    first_day = papers.take(args.per_day, START.date())
    write_profiles(config.paths.subscribers, args.subscribers, first_day, records, args.seed)
    watched = f"reader{min(4, args.subscribers - 1):05d}"
    report_days = {d for d in REPORT_DAYS if d <= args.days} | {args.days}
    rows = []
    for day in range(1, args.days + 1):
        midnight = START + timedelta(days=day - 1)
        start = time.perf_counter()
        if day == 1:  # made before the profiles, which like some of its papers
            write_papers(config.paths.inbox / f"{midnight.date().isoformat()}.json", first_day)
        else:
            write_day(papers, config.paths.inbox, args.per_day, midnight.date())
        writing = time.perf_counter() - start
        ingest_s = ingest(config, midnight + timedelta(hours=6))
        cold_s, warm_s, picks = preview(config, watched, midnight + timedelta(hours=6, minutes=30))
        send_s, sent = send(config, midnight + timedelta(hours=7))
        once_s = run_once(config, midnight + timedelta(hours=7, minutes=5))
        totals.add(writing=writing, ingest=ingest_s, preview=cold_s + warm_s, send=send_s, run_once=once_s)
        row = {
            "day": day,
            "papers": store_papers(config),
            "db_mb": database_mb(config),
            "ingest_s": ingest_s,
            "preview_cold_s": cold_s,
            "preview_warm_s": warm_s,
            "send_s": send_s,
            "sent": sent,
            "run_once_s": once_s,
            "peak_rss_mb": peak_rss_mb(),
            "load": os.getloadavg()[0],
        }
        print(
            f"day {day}: {row['papers']} papers, {row['db_mb']:.0f} MB; ingest {ingest_s:.2f} s, preview "
            f"{cold_s:.2f}/{warm_s:.2f} s ({picks} picks), send {send_s:.2f} s ({sent} sent), "
            f"run --once {once_s:.2f} s; peak RSS {row['peak_rss_mb']:.0f} MB; load {row['load']:.1f}; "
            f"{time.perf_counter() - wall:.0f} s so far",
            file=sys.stderr,
            flush=True,
        )
        if day in report_days:
            rows.append(row)
    big: dict[str, Any] | None = None
    if args.big_day > 0:
        midnight = START + timedelta(days=args.days)
        writing, _ = timed(lambda: write_day(papers, config.paths.inbox, args.big_day, midnight.date()))
        ingest_s = ingest(config, midnight + timedelta(hours=6))
        send_s, sent = send(config, midnight + timedelta(hours=7))
        totals.add(writing=writing, ingest=ingest_s, send=send_s)
        big = {
            "day": args.days + 1,
            "new": args.big_day,
            "papers": store_papers(config),
            "db_mb": database_mb(config),
            "ingest_s": ingest_s,
            "send_s": send_s,
            "sent": sent,
            "peak_rss_mb": peak_rss_mb(),
            "load": os.getloadavg()[0],
        }
        print(f"big day: {big}", file=sys.stderr, flush=True)
    return {
        "days": args.days,
        "per_day": args.per_day,
        "subscribers": args.subscribers,
        "real": papers.real,
        "recombined": papers.recombined,
        "coinages": papers.coinages,
        "prepare_s": prepared,
        "pool_rss_mb": pool_rss,
        "watched": watched,
        "rows": rows,
        "big": big,
        "totals": dict(totals.seconds),
        "wall_s": time.perf_counter() - wall,
    }


# ---- the report ----------------------------------------------------------------------------------------------


def print_report(result: dict[str, Any]) -> None:
    print(
        f"A year of one deployment: {result['days']} days x {result['per_day']} new papers, "
        f"{result['subscribers']} subscribers, everyone daily (benchmarks/year.py)"
    )
    print(
        f"papers: {result['real']} real ({DATA.name}), {result['recombined']} recombined "
        f"({result['coinages']} coined words); text pool ready in {result['prepare_s']:.1f} s, "
        f"RSS then {result['pool_rss_mb']:.0f} MB; preview of {result['watched']}"
    )
    print()
    print(
        "| day | papers | DB MB | ingest s | preview cold s | preview warm s | send s | sent | run --once s "
        "| peak RSS MB | load |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        print(
            f"| {r['day']} | {r['papers']:,} | {r['db_mb']:.1f} | {r['ingest_s']:.2f} | {r['preview_cold_s']:.2f} "
            f"| {r['preview_warm_s']:.2f} | {r['send_s']:.2f} | {r['sent']:,} | {r['run_once_s']:.2f} "
            f"| {r['peak_rss_mb']:.0f} | {r['load']:.1f} |"
        )
    big = result["big"]
    if big is not None:
        print()
        print("| big day | new papers | papers | DB MB | ingest s | send s | sent | peak RSS MB | load |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {big['day']} | {big['new']:,} | {big['papers']:,} | {big['db_mb']:.1f} | {big['ingest_s']:.2f} "
            f"| {big['send_s']:.2f} | {big['sent']:,} | {big['peak_rss_mb']:.0f} | {big['load']:.1f} |"
        )
    print()
    totals = result["totals"]
    print(
        f"total wall time: {result['wall_s']:.1f} s (ingest {totals.get('ingest', 0):.1f} s, previews "
        f"{totals.get('preview', 0):.1f} s, sends {totals.get('send', 0):.1f} s, run --once "
        f"{totals.get('run_once', 0):.1f} s, writing the inbox {totals.get('writing', 0):.1f} s)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--per-day", type=int, default=700, help="new papers a day")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--big-day", type=int, default=0, metavar="N", help="one more day of N new papers (0: off)")
    parser.add_argument("--real-papers", type=int, default=None, help="use only the file's first N papers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="workspace (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    args = parser.parse_args(argv)
    if args.days < 1 or args.per_day < 1 or args.subscribers < 1 or args.big_day < 0:
        parser.error("--days, --per-day and --subscribers must be at least 1, --big-day at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not DATA.exists():
        raise SystemExit(f"{DATA} not found (../shared/eval/ beside the repository)")
    if args.workdir is not None:
        if args.workdir.exists() and any(args.workdir.iterdir()):
            raise SystemExit(f"{args.workdir} is not empty")
        args.workdir.mkdir(parents=True, exist_ok=True)
        folder = args.workdir
    else:
        folder = Path(tempfile.mkdtemp(prefix="digest-year-"))
    try:
        result = simulate(args, folder)
    finally:
        if args.keep:
            print(f"workspace kept: {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print_report(result)


if __name__ == "__main__":
    main()
