"""The ranking model kept beside the database (digest.model_cache): what an ingest writes, what a preview reads,
and how a missing, damaged, foreign or half-written cache is survived. Real files, a real SQLite store, the CLI
in-process."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli import Ran, digest

import digest.model_cache as model_cache
from digest.model_cache import MODEL_FILE, cache_folder
from digest.paper import Paper
from digest.rank.model import RankModel

DEMO_INBOX = Path(__file__).resolve().parent.parent / "digest" / "demo_data" / "inbox"
WORDS = (
    "graph neural network message passing molecule protein diffusion image video generation pruning sparse"
    " quantization robot grasping policy reinforcement language model retrieval speech audio privacy federated"
    " causal inference bandit kernel optimisation convex stochastic gradient attention transformer vision"
).split()


def papers_file(path: Path, count: int, *, start: int, seed: int, title: str | None = None) -> Path:
    """A JSON paper list of `count` made-up papers (ids 2612.<start>...)."""
    rng = random.Random(seed)
    papers = []
    for number in range(start, start + count):
        words = rng.sample(WORDS, 6)
        papers.append(
            {
                "id": f"2612.{number:05d}",
                "title": title if title and number == start else f"{' '.join(words[:3]).title()} study {number}",
                "abstract": f"We study {' '.join(words)}. " + " ".join(rng.choice(WORDS) for _ in range(40)) + ".",
                "published": "2026-11-19",
            }
        )
    path.write_text(json.dumps(papers), encoding="utf-8")
    return path


def with_rank(workspace: Path, **settings: int) -> None:
    lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
    with (workspace / "config.toml").open("a", encoding="utf-8") as config:
        config.write(f"[rank]\n{lines}")


def header(workspace: Path) -> dict[str, Any]:
    with np.load(cache_folder(workspace / "var" / "digest.db") / MODEL_FILE, allow_pickle=False) as data:
        return dict(json.loads(bytes(data["header"])))


def folder(workspace: Path) -> Path:
    return cache_folder(workspace / "var" / "digest.db")


def row_files(workspace: Path) -> list[str]:
    return sorted(p.name for p in folder(workspace).glob("rows-*.npz"))


def ingest(workspace: Path, *sources: Path) -> Ran:
    ran = digest("ingest", *sources, cwd=workspace)
    assert ran.returncode == 0, ran.stderr
    return ran


def preview_ids(workspace: Path, subscriber: str = "ada") -> tuple[list[str], str]:
    """A preview's picks and its stderr, as a new process would see them (nothing loaded in memory)."""
    model_cache.forget_loaded_models()
    ran = digest("preview", subscriber, "--format", "json", cwd=workspace)
    assert ran.returncode == 0, ran.stderr
    return [p["id"] for p in json.loads(ran.stdout)["papers"]], ran.stderr


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The size of every corpus a model is fitted on from here on."""
    sizes: list[int] = []
    fit = RankModel.fit.__func__  # type: ignore[attr-defined]

    def counted(cls: type[RankModel], corpus: Sequence[Paper], settings: Any = None) -> RankModel:
        sizes.append(len(corpus))
        return fit(cls, corpus, settings)

    monkeypatch.setattr(RankModel, "fit", classmethod(counted))
    yield sizes


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of every paper encoded afresh (not read from stored rows) from here on."""
    ids: list[str] = []
    encode = RankModel.encode

    def recorded(self: RankModel, papers: Sequence[Paper]) -> Any:
        ids.extend(p.id or "" for p in papers)
        return encode(self, papers)

    monkeypatch.setattr(RankModel, "encode", recorded)
    return ids


def test_an_ingest_saves_the_model_and_a_preview_after_the_next_ingest_uses_it_without_a_fit(
    workspace: Path, fits: list[int], encoded: list[str]
) -> None:
    ingest(workspace, DEMO_INBOX)
    assert len(fits) == 1 and (folder(workspace) / MODEL_FILE).is_file() and len(row_files(workspace)) == 1
    fitted = header(workspace)
    assert fitted["corpus_size"] == fits[0] and fitted["fitted_seq"] == fits[0]
    model_file = (folder(workspace) / MODEL_FILE).read_bytes()

    # A few new papers: encoded with the saved model into a new row file; the model itself is not refitted.
    new = papers_file(
        workspace / "new.json", 3, start=1, seed=1, title="Graph neural networks with message passing on molecules"
    )
    ingest(workspace, new)
    assert len(fits) == 1, "an ingest of a few papers must not refit"
    assert (folder(workspace) / MODEL_FILE).read_bytes() == model_file
    assert len(row_files(workspace)) == 2
    assert sorted(encoded) == ["2612.00001", "2612.00002", "2612.00003"]

    encoded.clear()
    picks, stderr = preview_ids(workspace)
    assert stderr == ""
    assert fits == [fitted["corpus_size"]], "a preview fits nothing when the saved model is usable"
    assert "2612.00001" in picks, "the new paper on ada's interests is ranked"
    assert not set(encoded) & {"2612.00001", "2612.00002", "2612.00003"}, "new papers' rows come from the cache"


def test_a_refit_is_bounded_to_the_most_recent_papers(workspace: Path, fits: list[int]) -> None:
    with_rank(workspace, model_papers=100, refit_after=20)
    ingest(workspace, papers_file(workspace / "a.json", 130, start=1, seed=2))
    assert fits == [100] and header(workspace)["corpus_size"] == 100
    ingest(workspace, papers_file(workspace / "b.json", 10, start=200, seed=3))
    assert fits == [100], "10 new papers are below refit_after"
    ingest(workspace, papers_file(workspace / "c.json", 15, start=300, seed=4))
    assert fits == [100, 100], "25 papers since the fit reach refit_after: refitted, on the newest 100"
    assert header(workspace)["fitted_seq"] == 155
    assert len(row_files(workspace)) == 1, "a refit leaves only its own row file"


def test_row_files_are_merged_when_they_pile_up(workspace: Path, fits: list[int]) -> None:
    ingest(workspace, papers_file(workspace / "first.json", 120, start=1, seed=5))
    for batch in range(model_cache.ROW_FILES_KEPT + 2):
        ingest(workspace, papers_file(workspace / f"day{batch}.json", 1, start=1000 + batch, seed=batch))
    assert len(fits) == 1
    assert len(row_files(workspace)) <= model_cache.ROW_FILES_KEPT
    picks, stderr = preview_ids(workspace)
    assert stderr == "" and len(fits) == 1


def test_a_deleted_cache_is_a_one_line_notice_and_the_same_picks(workspace: Path, fits: list[int]) -> None:
    ingest(workspace, DEMO_INBOX)
    before, _ = preview_ids(workspace)
    shutil.rmtree(folder(workspace))
    after, stderr = preview_ids(workspace)
    assert after == before
    assert stderr.count("\n") == 1 and "there is none yet" in stderr and "fitting the model" in stderr
    assert not folder(workspace).exists(), "a preview writes nothing, not even the cache"
    ran = digest("send", "--all", cwd=workspace)
    assert ran.returncode == 0, ran.stderr
    assert (folder(workspace) / MODEL_FILE).is_file(), "a send saves the model it had to fit"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.write_bytes(b"not a zip file at all"), id="garbage"),
        pytest.param(lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]), id="truncated"),
        pytest.param(lambda path: path.write_bytes(b""), id="empty"),
    ],
)
def test_a_damaged_model_file_is_rebuilt_not_misread(workspace: Path, fits: list[int], damage: Any) -> None:
    ingest(workspace, DEMO_INBOX)
    before, _ = preview_ids(workspace)
    damage(folder(workspace) / MODEL_FILE)
    after, stderr = preview_ids(workspace)
    assert after == before
    assert stderr.count("\n") == 1 and "it is unreadable" in stderr
    ingest(workspace, papers_file(workspace / "new.json", 1, start=1, seed=6))
    assert header(workspace)["corpus_size"] > 0, "the next ingest saved a good model again"
    assert preview_ids(workspace)[1] == ""


def rewrite_header(workspace: Path, **changes: Any) -> None:
    path = folder(workspace) / MODEL_FILE
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    saved = json.loads(bytes(arrays["header"]))
    saved.update(changes)
    arrays["header"] = np.frombuffer(json.dumps(saved).encode(), dtype=np.uint8)
    with path.open("wb") as out:
        np.savez(out, **arrays)


@pytest.mark.parametrize(
    ("changes", "notice"),
    [
        ({"format": 0}, "made by another release"),
        ({"sklearn": "0.1"}, "made by another release"),
        ({"store_id": 12345}, "belongs to another database"),
        ({"settings": "papers=1;min_df=1;max_features=5"}, "[rank] model settings changed"),
        ({"tag": "../../etc/passwd"}, "it is unreadable"),
        ({"fitted_seq": "lots"}, "it is unreadable"),
        ({"unexpected": 1}, "it is unreadable"),
        ({"fitted_seq": 10**9}, "newer than the database"),
    ],
)
def test_a_model_from_another_release_config_or_database_is_rebuilt(
    workspace: Path, fits: list[int], changes: dict[str, Any], notice: str
) -> None:
    ingest(workspace, DEMO_INBOX)
    before, _ = preview_ids(workspace)
    rewrite_header(workspace, **changes)
    after, stderr = preview_ids(workspace)
    assert after == before and stderr.count("\n") == 1 and notice in stderr, stderr


def test_changing_the_rank_settings_rebuilds_the_model(workspace: Path, fits: list[int]) -> None:
    ingest(workspace, DEMO_INBOX)
    with_rank(workspace, max_features=5000)
    _, stderr = preview_ids(workspace)
    assert "[rank] model settings changed" in stderr


def test_a_damaged_row_file_is_skipped_and_its_papers_encoded_again(
    workspace: Path, fits: list[int], encoded: list[str]
) -> None:
    ingest(workspace, DEMO_INBOX)
    before, _ = preview_ids(workspace)
    (only,) = row_files(workspace)
    (folder(workspace) / only).write_bytes(b"\x00" * 100)
    encoded.clear()
    after, stderr = preview_ids(workspace)
    assert after == before and len(fits) == 1
    assert stderr.count("\n") == 1 and "ignoring the damaged" in stderr
    assert set(before) <= set(encoded)


def test_a_save_that_fails_midway_leaves_the_old_model_usable(
    workspace: Path, fits: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_rank(workspace, refit_after=1)
    ingest(workspace, DEMO_INBOX)
    saved = (folder(workspace) / MODEL_FILE).read_bytes()
    (folder(workspace) / ".model.npz.left-by-a-crash.tmp").write_bytes(b"half")

    def disk_full(out: Any, **_arrays: Any) -> None:
        out.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    savez = np.savez
    monkeypatch.setattr(model_cache.np, "savez", disk_full)
    ran = ingest(workspace, papers_file(workspace / "new.json", 2, start=1, seed=7))
    assert "could not save the model" in ran.stderr and "No space left on device" in ran.stderr
    assert (folder(workspace) / MODEL_FILE).read_bytes() == saved
    assert not [p for p in folder(workspace).iterdir() if p.name.endswith(".tmp") and "crash" not in p.name]
    monkeypatch.setattr(model_cache.np, "savez", savez)

    # A new process: the old model is read as it was (its rows too), and the next save tidies up.
    fitted = len(fits)
    picks, stderr = preview_ids(workspace)
    assert stderr == "" and picks and len(fits) == fitted
    ingest(workspace, papers_file(workspace / "more.json", 2, start=10, seed=8))
    assert not list(folder(workspace).glob("*.tmp")), "a save removes temp files a crash left"
    assert header(workspace)["fitted_seq"] == header(workspace)["corpus_size"]


def test_preview_and_send_rank_the_same_with_and_without_the_cache(workspace: Path) -> None:
    ingest(workspace, DEMO_INBOX)
    with_cache, _ = preview_ids(workspace, "grace")
    shutil.rmtree(folder(workspace))
    model_cache.forget_loaded_models()
    ran = digest("send", "grace", "--dry-run", "--json", cwd=workspace)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["sent"][0]["papers"] == with_cache


@pytest.mark.parametrize("damage", ["flipped byte", "rows of another file"])
def test_a_row_file_damaged_behind_valid_ids_is_encoded_again_not_misread(
    workspace: Path, fits: list[int], encoded: list[str], damage: str
) -> None:
    """The ids of a row file are read when it is listed, its rows when first needed: rows that no longer load, or
    do not fit the ids, must never be used (and never stop a preview or send)."""
    ingest(workspace, DEMO_INBOX)
    before, _ = preview_ids(workspace)
    (only,) = row_files(workspace)
    path = folder(workspace) / only
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    if damage == "flipped byte":
        arrays["data"] = arrays["data"].copy()
        with path.open("wb") as out:
            np.savez(out, **arrays)
        raw = bytearray(path.read_bytes())
        at = raw.find(b"data.npy") + 200  # inside the rows' values: the member's CRC no longer matches
        raw[at] ^= 0xFF
        path.write_bytes(bytes(raw))
    else:  # right ids and digests, the rows of fewer papers
        arrays["indptr"] = arrays["indptr"][:-1]
        arrays["shape"] = np.array([arrays["shape"][0] - 1, arrays["shape"][1]])
        with path.open("wb") as out:
            np.savez(out, **arrays)
    encoded.clear()
    after, stderr = preview_ids(workspace)
    assert after == before and len(fits) == 1
    assert set(before) <= set(encoded), "the rows were encoded afresh"


def test_ingests_racing_in_two_processes_leave_a_usable_cache(workspace: Path) -> None:
    """Two `digest ingest` processes at once, three times over (some refit, some encode): every write goes through
    the cache lock, so afterwards the model loads without a notice and no temp file is left."""
    import os
    import subprocess
    import sys

    with_rank(workspace, refit_after=30)
    ingest(workspace, papers_file(workspace / "base.json", 60, start=1, seed=11))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for round_ in range(3):
        files = [
            papers_file(workspace / f"r{round_}-{side}.json", 12, start=1000 + 100 * round_ + 50 * side, seed=side)
            for side in (0, 1)
        ]
        racers = [
            subprocess.Popen(
                [sys.executable, "-m", "digest", "ingest", str(path)],
                cwd=workspace,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for path in files
        ]
        for racer in racers:
            _, err = racer.communicate(timeout=120)
            assert racer.returncode == 0, err
    picks, stderr = preview_ids(workspace)
    assert stderr == "" and not list(folder(workspace).glob("*.tmp"))
    assert header(workspace)["corpus_size"] >= 60


def test_a_big_ingest_stores_rows_for_the_papers_its_refit_did_not_read(
    workspace: Path, fits: list[int], encoded: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big day: the refit reads only the newest model_papers papers; the others are the next send's
    candidates too, so the ingest encodes and stores them (in batches), and a preview encodes none."""
    monkeypatch.setattr(model_cache, "ENCODE_BATCH", 70)
    with_rank(workspace, model_papers=100, refit_after=50)
    ingest(workspace, papers_file(workspace / "a.json", 120, start=1, seed=12))
    ingest(workspace, papers_file(workspace / "big.json", 300, start=500, seed=13))
    assert fits == [100, 100]
    assert len(row_files(workspace)) > 2, "the fit's rows and the others' in batches"
    encoded.clear()
    preview_ids(workspace, "ada")
    big_day = {f"2612.{n:05d}" for n in range(500, 800)}
    assert not set(encoded) & big_day, sorted(set(encoded) & big_day)[:5]
