"""Sentence embeddings in ranking (the optional [semantic] extra, `[rank] embeddings`): installed, absent, and
kept beside the database. The embedder is the real one (onnxruntime, the packaged all-MiniLM-L6-v2 int8 file);
the tests that need it skip, with the reason, where the extra is not installed. "Absent" is made real by hiding
the runtime from the import system."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from cli import digest
from test_model_cache import DEMO_INBOX, folder, ingest, papers_file

import digest.model_cache as model_cache
import digest.rank.embeddings as embeddings
from digest.config import load_config
from digest.errors import DigestError
from digest.paper import Paper
from digest.rank import build_model, rank
from digest.rank.embeddings import EmbeddingSettings, PaperVectors, load_embedder, unavailable_reason
from digest.subscribers import Interests

try:
    EMBEDDER = load_embedder(EmbeddingSettings("auto"))
except Exception:  # noqa: BLE001 - any failure means: not usable here
    EMBEDDER = None
needs_extra = pytest.mark.skipif(
    EMBEDDER is None,
    reason="the [semantic] extra is not installed (pip install -e '.[semantic]'): "
    + str(unavailable_reason(EmbeddingSettings("auto"))),
)


@pytest.fixture(autouse=True)
def embeddings_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Here the config decides (conftest turns embeddings off for every other test)."""
    monkeypatch.delenv("DIGEST_EMBEDDINGS", raising=False)
    model_cache.forget_loaded_models()


@pytest.fixture
def no_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime cannot be imported (as on a machine without the extra); loaded embedders are forgotten."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    embeddings.forget_embedders()
    model_cache._NOTICES.clear()
    yield
    embeddings.forget_embedders()


def paper(paper_id: str, title: str, abstract: str) -> Paper:
    return Paper(title=title, abstract=abstract, id=paper_id)


VIDEO = [
    paper(
        "v1",
        "Synthesizing short clips from captions",
        "A generative model produces moving pictures from a sentence, frame after frame, with temporal consistency.",
    ),
    paper("v2", "Animating still photographs", "A motion field drives each frame of a clip."),
]
OTHER = [
    paper("o1", "Galaxy clusters in deep surveys", "We count galaxy clusters and measure their masses with lensing."),
    paper("o2", "Robot grasping with touch", "A robot hand learns to grasp objects from tactile signals."),
    paper("o3", "Protein folding kinetics", "We simulate how small proteins fold and measure folding rates."),
    paper("o4", "Sparse linear solvers", "Iterative solvers converge faster with our preconditioner."),
    paper("o5", "Auction design for ads", "We design auctions that sell advertising slots and prove revenue bounds."),
]


# -- installed ------------------------------------------------------------------------------------------------


@needs_extra
def test_vectors_are_unit_length_deterministic_and_follow_meaning() -> None:
    assert EMBEDDER is not None
    texts = ["text-to-video generation", "making moving pictures from a sentence", "galaxy cluster masses"]
    first, again = EMBEDDER.embed(texts), EMBEDDER.embed(list(reversed(texts)))[::-1]
    assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.allclose(first, again, atol=1e-5)  # batch order and padding do not change a vector
    assert first[0] @ first[1] > first[0] @ first[2] + 0.1


@needs_extra
def test_a_keyword_finds_a_paper_that_shares_no_word_with_it_and_says_so() -> None:
    candidates = [*VIDEO, *OTHER]
    interests = Interests(keywords=("text-to-video",))
    without = build_model(candidates)
    assert rank(without, candidates, interests) == []  # no paper contains the words: TF-IDF alone finds nothing
    assert EMBEDDER is not None
    model = build_model(candidates, vectors=PaperVectors(EMBEDDER))
    picks = rank(model, candidates, interests, max_papers=3)
    assert picks[0].paper.id == "v1"
    assert picks[0].why == 'closest in meaning to "text-to-video"'


@needs_extra
def test_ingest_stores_vectors_and_a_preview_embeds_no_stored_paper(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(workspace, DEMO_INBOX)
    files = sorted(folder(workspace).glob("vectors-*.npz"))
    assert len(files) == 1
    with np.load(files[0]) as data:
        stored = bytes(data["ids"]).decode().split("\n")
        assert data["vectors"].dtype == np.float16 and data["vectors"].shape == (len(stored), 384)
    assert len(stored) >= 10
    embedded: list[str] = []
    original = embeddings.Embedder.embed

    def counting(self: embeddings.Embedder, texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return original(self, texts)

    monkeypatch.setattr(embeddings.Embedder, "embed", counting)
    embeddings.forget_embedders()  # a new process: no vectors remembered in memory
    model_cache.forget_loaded_models()
    ran = digest("preview", "ada", "--format", "json", cwd=workspace)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["papers"]
    papers_text = {f"{p['title']}." for p in json.loads(ran.stdout)["papers"]}
    # Only the startup check and the profile's keywords were embedded, never a stored paper.
    assert not any(text.startswith(tuple(papers_text)) for text in embedded)
    assert all(len(text) < 100 for text in embedded)


@needs_extra
def test_a_damaged_vector_file_means_embedding_again_not_failing(workspace: Path) -> None:
    ingest(workspace, DEMO_INBOX)
    (damaged,) = folder(workspace).glob("vectors-*.npz")
    damaged.write_bytes(b"PK\x03\x04 this is not a zip archive")
    embeddings.forget_embedders()
    model_cache.forget_loaded_models()
    ran = digest("preview", "ada", "--format", "json", cwd=workspace)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["papers"]


@needs_extra
def test_vector_files_are_merged_when_they_pile_up(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_cache, "ROW_FILES_KEPT", 3)
    for n in range(6):
        ingest(workspace, papers_file(workspace / f"day{n}.json", 3, start=100 + 10 * n, seed=n))
    files = sorted(folder(workspace).glob("vectors-*.npz"))
    assert len(files) == 3
    ids: list[str] = []
    for path in files:
        with np.load(path) as data:
            ids += bytes(data["ids"]).decode().split("\n")
    assert len(ids) == len(set(ids)) == 18  # every paper once, none lost in the merges


@needs_extra
def test_another_model_file_of_the_same_shape_can_be_configured(workspace: Path) -> None:
    assert EMBEDDER is not None
    copy = workspace / "models" / "mini.onnx"
    copy.parent.mkdir()
    shutil.copy(EMBEDDER.model_path, copy)
    with (workspace / "config.toml").open("a", encoding="utf-8") as config:
        config.write('[rank]\nembeddings = "on"\nembedding_model = "models/mini.onnx"\n')
    policy = load_config(workspace / "config.toml").rank.policy()
    assert policy.embeddings.model == copy.resolve()
    loaded = load_embedder(policy.embeddings)
    assert loaded is not None and loaded.model_path == copy.resolve() and loaded.key == EMBEDDER.key


# -- absent or off --------------------------------------------------------------------------------------------


def test_without_the_runtime_auto_ranks_as_before_with_a_one_line_notice(workspace: Path, no_runtime: None) -> None:
    assert load_embedder(EmbeddingSettings("auto")) is None
    reason = unavailable_reason(EmbeddingSettings("auto"))
    assert reason is not None and "paper-digest[semantic]" in reason and "\n" not in reason
    ingest(workspace, DEMO_INBOX)
    assert not list(folder(workspace).glob("vectors-*.npz"))
    model_cache.forget_loaded_models()
    ran = digest("preview", "ada", "--format", "json", cwd=workspace)
    assert ran.returncode == 0 and json.loads(ran.stdout)["papers"]


def test_without_the_runtime_on_is_a_clear_error(workspace: Path, no_runtime: None) -> None:
    with (workspace / "config.toml").open("a", encoding="utf-8") as config:
        config.write('[rank]\nembeddings = "on"\n')
    message = '[rank] embeddings = "on", but semantic ranking needs onnxruntime'
    ran = digest("ingest", DEMO_INBOX, cwd=workspace)
    assert ran.returncode == 0  # the papers are stored; the model cache says why it was not brought up to date
    assert message in ran.stderr and "Traceback" not in ran.stderr
    ran = digest("preview", "ada", cwd=workspace)
    assert ran.returncode != 0 and "Traceback" not in ran.stderr
    assert message in ran.stderr and len(ran.stderr.strip().splitlines()) == 1


def test_a_missing_model_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(embeddings.EmbeddingsUnavailable, match=r"\[rank\] embedding_model: .*nowhere.onnx"):
        load_embedder(EmbeddingSettings("on", tmp_path / "nowhere.onnx"))


def test_off_means_no_embedder_and_no_notice(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_EMBEDDINGS", "off")
    assert load_embedder(EmbeddingSettings("off")) is None
    assert unavailable_reason(EmbeddingSettings("off")) is None
    ingest(workspace, DEMO_INBOX)
    assert not list(folder(workspace).glob("vectors-*.npz"))


def test_the_override_variable_is_checked(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_EMBEDDINGS", "sometimes")
    with pytest.raises(DigestError, match='DIGEST_EMBEDDINGS=.sometimes.: must be "auto", "on" or "off"'):
        load_config(workspace / "config.toml").rank.policy()


@needs_extra
def test_a_send_keeps_the_keywords_it_embedded_and_a_preview_writes_nothing(workspace: Path) -> None:
    ingest(workspace, DEMO_INBOX)
    ran = digest("preview", "ada", cwd=workspace)
    assert ran.returncode == 0, ran.stderr
    assert not list(folder(workspace).glob("queries-*.npz"))
    ran = digest("send", "--all", cwd=workspace)
    assert ran.returncode == 0, ran.stderr
    texts: list[str] = []
    for kept in folder(workspace).glob("queries-*.npz"):
        with np.load(kept) as data:
            texts += json.loads(bytes(data["texts"]))
    # Every subscriber's keywords once (ada's were embedded by the preview in this process: saved all the same).
    assert sorted(texts) == sorted(set(texts)) and {"graph neural networks", "sparsity"} <= set(texts)
    embeddings.forget_embedders()
    model_cache.forget_loaded_models()
    policy = load_config(workspace / "config.toml").rank.policy()
    from digest.store import Store

    with Store(workspace / "var" / "digest.db") as store:
        model = model_cache.planning_model(store, policy)
    assert model.vectors is not None and "graph neural networks" in model.vectors.known_queries()


@needs_extra
def test_the_runtime_writes_nothing_about_its_host(tmp_path: Path) -> None:
    """onnxruntime keeps a device id and a usage database under ~/.cache unless told not to: we tell it."""
    import os
    import subprocess
    import sys

    code = (
        "from digest.rank.embeddings import EmbeddingSettings, load_embedder;"
        "print(load_embedder(EmbeddingSettings('on')).embed(['x']).shape)"
    )
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / ".cache")}
    env.pop("ORT_DISABLE_TELEMETRY", None)
    env.pop("DIGEST_EMBEDDINGS", None)
    ran = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and "(1, 384)" in ran.stdout, ran.stderr[-1000:]
    assert not [p for p in tmp_path.rglob("*") if "Microsoft" in p.parts or "onnxruntime" in p.name]
