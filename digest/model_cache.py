"""The ranking model, kept beside the database so that a run costs what is new, not what is stored.

`<database>.model/` holds:
- `model.npz`: the fitted model as plain arrays (digest.rank.model.model_state; no pickle, so a damaged or
  hostile file can only fail to load) and a JSON header saying which release format, scikit-learn version, fit
  settings and database it belongs to, and up to which paper (sequence number) it was fitted;
- `rows-<tag>-<seq>.npz`: encoded rows of papers (ids, text digests, the sparse rows) for the model `<tag>`, up to
  paper sequence number `<seq>`: one file for the fit corpus, one per ingest since (merged when they pile up).

Who does what:
- An ingest (`refresh_model`) keeps it current: it encodes the papers committed since the last row file with the
  saved model, or refits when the model is missing, unusable, or `ModelPolicy.stale_after` papers behind.
  A refit reads only the most recent `FitSettings.papers` papers, so its cost is bounded whatever the history.
- Planning (`planning_model`: preview, rank, send, feeds, the daemon) loads the saved model and its rows and never
  refits a usable one, so a preview is what the next send would produce. With no usable model it fits the same
  corpus a refresh would, in memory (a preview writes nothing), or saving it (a send), with a one-line notice.
- All of it is a cache: the papers live only in the database. Deleting the folder, a damaged file, a file from
  an older release or another configuration: the model is rebuilt, never misread. Files are written atomically
  (temp file, fsync, rename), row files before the model that names them, so a crash leaves the old model usable.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import re
import secrets
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import sklearn
from scipy import sparse

from digest import trace
from digest.errors import DigestError
from digest.files import write_atomically
from digest.rank.embeddings import (
    EmbeddingSettings,
    EmbeddingsUnavailable,
    PaperVectors,
    load_embedder,
    unavailable_reason,
    vector_digest,
)
from digest.rank.model import FitSettings, RankModel, model_from_state, model_state, text_digest
from digest.store import Store

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the files' layout or the model's maths change: older files are then rebuilt
MODEL_FILE = "model.npz"
ROW_FILES_KEPT = 12  # more row files than this for one model are merged into one at the next refresh
_ROW_FILE = re.compile(r"rows-([0-9a-f]{16})-(\d{12})-[0-9a-f]{8}\.npz")
# Sentence-embedding vectors (digest.rank.embeddings) of the papers up to <seq>, for the embedder <key>. They do
# not depend on the TF-IDF fit, so they outlive refits.
_VECTOR_FILE = re.compile(r"vectors-([0-9a-f]{16}-\d{1,5})-(\d{12})-[0-9a-f]{8}\.npz")
# When sentence embeddings are first turned on for a store, the most recent papers this many are embedded (older
# ones only if a reader liked them, when ranking needs them); from then on each ingest embeds its new papers.
EMBED_BACKLOG = 5000
# Keywords embedded by a send (texts as a JSON list, vectors), for the embedder <key>.
_QUERY_FILE = re.compile(r"queries-([0-9a-f]{16}-\d{1,5})-[0-9a-f]{8}\.npz")
EMBED_BATCH = 2000
LOCK_FILE = "lock"
_BAD_FILE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError)


@dataclass(frozen=True)
class ModelPolicy:
    """The fit settings, and when a saved model is refitted: once `refit_after` papers have arrived since its
    fit, or a quarter of its corpus if that is fewer (a young store's model follows its growth closely)."""

    fit: FitSettings = field(default_factory=FitSettings)
    refit_after: int = 5000
    embeddings: EmbeddingSettings = field(default_factory=EmbeddingSettings)

    def stale_after(self, corpus_size: int) -> int:
        return max(1, min(self.refit_after, -(-corpus_size // 4)))


def cache_folder(database: Path) -> Path:
    return database.with_name(database.name + ".model")


@dataclass
class _Header:
    format: int
    sklearn: str
    settings: str
    store_id: int
    fitted_seq: int
    corpus_size: int
    tag: str

    def __post_init__(self) -> None:
        types = {
            "format": int,
            "sklearn": str,
            "settings": str,
            "store_id": int,
            "fitted_seq": int,
            "corpus_size": int,
            "tag": str,
        }
        for name, kind in types.items():
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"header field {name} is not {kind.__name__}")
        if self.tag and not re.fullmatch(r"[0-9a-f]{16}", self.tag):
            raise ValueError("header tag is malformed")

    @classmethod
    def expected(cls, store: Store, policy: ModelPolicy) -> _Header:
        return cls(FORMAT, sklearn.__version__, policy.fit.fingerprint(), store.papers_version()[0], 0, 0, "")

    def mismatch(self, expected: _Header) -> str | None:
        if self.format != expected.format or self.sklearn != expected.sklearn:
            return "it was made by another release"
        if self.store_id != expected.store_id:
            return "it belongs to another database"
        if self.settings != expected.settings:
            return "the [rank] model settings changed"
        return None


@dataclass
class _Loaded:
    model: RankModel
    header: _Header
    signature: tuple[int, int, int] | None  # the model file's (inode, mtime, size); None: not saved
    papers_version: tuple[int, int]
    row_files: set[str] = field(default_factory=set)
    covered_seq: int = 0  # rows are stored for the papers up to this sequence number
    vector_files: set[str] = field(default_factory=set)
    vectors_seq: int = 0  # sentence vectors are stored for the papers up to this sequence number


# The model of each database this process has used: a process that plans many times (the daemon, the demo, a
# test suite) loads once, and re-reads only when another process saved a new one.
_LOADED: OrderedDict[str, _Loaded] = OrderedDict()
_LOADED_KEPT = 2


def forget_loaded_models() -> None:
    """Drop this process's loaded models (the next use reads the files again, as a new process would)."""
    _LOADED.clear()
    _SAVED_QUERIES.clear()


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _read_model(folder: Path, expected: _Header) -> tuple[RankModel, _Header] | str:
    """The saved model, or why it cannot be used."""
    path = folder / MODEL_FILE
    try:
        with np.load(path, allow_pickle=False) as data:
            header = _Header(**json.loads(bytes(data["header"]).decode("utf-8")))
            problem = header.mismatch(expected)
            if problem:
                return problem
            state = {name: data[name] for name in data.files if name != "header"}
        return model_from_state(state, tag=header.tag, corpus_size=header.corpus_size), header
    except FileNotFoundError:
        return "there is none yet"
    except (*_BAD_FILE, TypeError) as exc:
        return f"it is unreadable ({type(exc).__name__}: {exc})"


def _row_files(folder: Path, tag: str) -> dict[str, int]:
    """Row files of one model: name -> the last paper sequence number they cover."""
    try:
        names = [entry.name for entry in folder.iterdir()]
    except OSError:
        return {}
    found = {}
    for name in names:
        match = _ROW_FILE.fullmatch(name)
        if match and match.group(1) == tag:
            found[name] = int(match.group(2))
    return found


def _load_matrix(path: Path, ids: bytes) -> sparse.csr_matrix:
    """A row file's matrix, read with its ids from one handle: rows are only used for the papers they were
    written for (a row file is never rewritten, but a damaged or swapped one must not be misread)."""
    with np.load(path, allow_pickle=False) as data:
        if bytes(data["ids"]) != ids:
            raise ValueError(f"{path.name}: its papers are not the ones listed when it was opened")
        shape = tuple(int(n) for n in data["shape"])
        return sparse.csr_matrix((data["data"], data["indices"], data["indptr"]), shape=shape)


@contextlib.contextmanager
def _cache_lock(folder: Path) -> Iterator[None]:
    """One writer at a time in the cache folder (processes, and the daemon's threads): a writer's temp files and
    row files are never removed under it, and an older fit never replaces a newer one."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+b") as handle, _THREAD_LOCK:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


_THREAD_LOCK = threading.RLock()


def _read_row_ids(path: Path) -> tuple[bytes, list[str], np.ndarray]:
    """A row file's ids (as stored, and split) and text digests; ValueError when they do not pair up."""
    with np.load(path, allow_pickle=False) as data:
        raw_ids = bytes(data["ids"])
        digests = np.asarray(data["digests"], dtype=np.uint64)
    ids = raw_ids.decode("utf-8").split("\n") if raw_ids else []
    if len(ids) != digests.shape[0]:
        raise ValueError("ids and digests differ in length")
    return raw_ids, ids, digests


def _unseen_files(
    folder: Path, files: dict[str, int], seen: set[str], papers: str
) -> Iterator[tuple[str, int, bytes, list[str], np.ndarray]]:
    """Row or vector files not attached yet, oldest first, with their ids and digests; a damaged one is skipped
    with a warning (its `papers` are encoded again when needed)."""
    for name, seq in sorted(files.items(), key=lambda item: item[1]):
        if name in seen:
            continue
        path = folder / name
        try:
            raw_ids, ids, digests = _read_row_ids(path)
        except _BAD_FILE as exc:
            log.warning("model cache: ignoring the damaged %s (%s); its %s", path, exc, papers)
            continue
        yield name, seq, raw_ids, ids, digests


def _attach_rows(loaded: _Loaded, folder: Path) -> None:
    """Make the model aware of row files it has not seen (the ids now; the rows when a paper needs them)."""
    files = _row_files(folder, loaded.header.tag)
    for name, seq, raw_ids, ids, digests in _unseen_files(folder, files, loaded.row_files, "papers are encoded again"):
        loaded.model.add_rows(ids, digests, functools.partial(_load_matrix, folder / name, raw_ids))
        loaded.row_files.add(name)
        loaded.covered_seq = max(loaded.covered_seq, seq)


def _write_rows(folder: Path, tag: str, seq: int, ids: list[str], digests: np.ndarray, rows: Any) -> str:
    """A new row file (call under _cache_lock). Its name is new too: a file, once listed, never changes."""
    name = f"rows-{tag}-{seq:012d}-{secrets.token_hex(4)}.npz"
    matrix = sparse.csr_matrix(rows, dtype=np.float32)

    def write(out: BinaryIO) -> None:
        np.savez(
            out,
            data=matrix.data,
            indices=matrix.indices,
            indptr=matrix.indptr,
            shape=np.array(matrix.shape, dtype=np.int64),
            ids=np.frombuffer("\n".join(ids).encode("utf-8"), dtype=np.uint8),
            digests=np.asarray(digests, dtype=np.uint64),
        )

    write_atomically(folder / name, write)
    return name


def _write_model(folder: Path, model: RankModel, header: _Header) -> None:
    state = model_state(model)
    encoded = np.frombuffer(json.dumps(header.__dict__).encode("utf-8"), dtype=np.uint8)
    arrays: dict[str, Any] = {"header": encoded, **state}
    write_atomically(folder / MODEL_FILE, lambda out: np.savez(out, **arrays))


def _remove_other_files(folder: Path, keep: set[str]) -> None:
    """Row files of older models, and temp files a crash left behind (under _cache_lock: no writer is active)."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        stray = entry.name.endswith(".tmp") or (_ROW_FILE.fullmatch(entry.name) and entry.name not in keep)
        if stray:
            entry.unlink(missing_ok=True)


def _fit(store: Store, policy: ModelPolicy) -> tuple[RankModel, _Header]:
    """A model fitted on the most recent papers, and its header."""
    high = store.max_seq()
    corpus = store.recent_papers(policy.fit.papers, max_seq=high)
    model = RankModel.fit(corpus, policy.fit)
    header = _Header.expected(store, policy)
    header.fitted_seq, header.corpus_size, header.tag = high, len(corpus), model.tag
    return model, header


def _fit_and_keep(store: Store, policy: ModelPolicy, *, save: bool, why: str) -> _Loaded:
    folder = cache_folder(store.path)
    version = store.papers_version()  # before the fit: a commit during it makes this model look out of date
    model, header = _fit(store, policy)
    loaded = _Loaded(model, header, None, version, covered_seq=header.fitted_seq)
    if save:
        _try_save(loaded, folder)
    log.debug("model cache: fitted on %d paper(s) (%s)", header.corpus_size, why)
    _keep(store, loaded)
    return loaded


def _try_save(loaded: _Loaded, folder: Path) -> None:
    try:
        _save_fitted(folder, loaded)
    except OSError as exc:
        log.warning("model cache: could not save the model in %s (%s); it is fitted again next time", folder, exc)


def _save_fitted(folder: Path, loaded: _Loaded) -> None:
    model, header = loaded.model, loaded.header
    with _cache_lock(folder):
        saved = _read_header(folder)
        if saved is not None and saved.mismatch(header) is None and saved.fitted_seq >= header.fitted_seq:
            return  # another process saved a fit at least as recent meanwhile: that one stays
        names = set()
        for block in model.blocks()[:1]:  # a fresh fit holds one block: its corpus' rows
            if block.matrix is not None:
                names.add(_write_rows(folder, header.tag, header.fitted_seq, block.ids, block.digests, block.matrix))
        _write_model(folder, model, header)  # after the rows it names: a crash in between leaves the old model
        _remove_other_files(folder, names)
        loaded.signature = _signature(folder / MODEL_FILE)
        loaded.row_files = names


def _read_header(folder: Path) -> _Header | None:
    try:
        with np.load(folder / MODEL_FILE, allow_pickle=False) as data:
            return _Header(**json.loads(bytes(data["header"]).decode("utf-8")))
    except (*_BAD_FILE, TypeError):
        return None


def _keep(store: Store, loaded: _Loaded) -> None:
    key = str(store.path.resolve())
    _LOADED[key] = loaded
    _LOADED.move_to_end(key)
    while len(_LOADED) > _LOADED_KEPT:
        _LOADED.popitem(last=False)


def _current(store: Store, policy: ModelPolicy) -> _Loaded | str:
    """The usable saved model (from this process's memory when the file did not change), or why there is none."""
    folder = cache_folder(store.path)
    expected = _Header.expected(store, policy)
    kept = _LOADED.get(str(store.path.resolve()))
    signature = _signature(folder / MODEL_FILE)
    if kept is not None and kept.header.mismatch(expected) is None and kept.header.fitted_seq <= store.max_seq():
        if kept.signature is not None and kept.signature == signature:
            _attach_rows(kept, folder)
            return kept
        if kept.signature is None and kept.papers_version == store.papers_version():
            return kept  # fitted in memory (a preview, or the save failed), and the papers have not changed
    read = _read_model(folder, expected)
    if isinstance(read, str):
        return read
    model, header = read
    if header.fitted_seq > store.max_seq():
        return "it is newer than the database (was the database restored from a backup?)"
    # Papers up to the fit are the fit's to encode (on demand, if its row file is gone); a refresh goes on from there.
    loaded = _Loaded(model, header, signature, store.papers_version(), covered_seq=header.fitted_seq)
    _attach_rows(loaded, folder)
    _keep(store, loaded)
    return loaded


@trace.traced("model")
def planning_model(store: Store, policy: ModelPolicy | None = None, *, save: bool = False) -> RankModel:
    """The model to rank with: the saved one (never refitted here), else one fitted on the most recent papers,
    saved when `save` (a send may write the cache; a preview writes nothing). With sentence embeddings on, it
    carries them (stored vectors attached; a paper without one is embedded in memory)."""
    policy = policy or ModelPolicy()
    current = _current(store, policy)
    if isinstance(current, _Loaded):
        if save and current.signature is None:  # fitted in memory by an earlier preview in this process
            _try_save(current, cache_folder(store.path))
        loaded = current
    else:
        if current != "there is none yet" or store.count_papers():
            log.warning(
                "model cache %s: %s; fitting the model on up to %d recent papers%s",
                cache_folder(store.path),
                current,
                policy.fit.papers,
                "" if save else " for this run (an ingest or send saves it)",
            )
        loaded = _fit_and_keep(store, policy, save=save, why=current)
    _with_vectors(loaded, cache_folder(store.path), policy.embeddings)
    _keep_new_queries(loaded.model, store.path, save)
    return loaded.model


_NOTICES: set[str] = set()


def _with_vectors(loaded: _Loaded, folder: Path, settings: EmbeddingSettings) -> None:
    """Give the model its sentence embeddings (or take them away when they are off or unavailable): the embedder,
    and the stored vector files it has not seen. "on" without a working embedder is an error; "auto" says once
    per process why it goes on without."""
    try:
        embedder = load_embedder(settings)
    except EmbeddingsUnavailable as error:
        raise DigestError(f'[rank] embeddings = "on", but {error}') from None
    if embedder is None:
        loaded.model.vectors = None
        reason = unavailable_reason(settings)
        if reason and reason not in _NOTICES:
            _NOTICES.add(reason)
            log.warning("ranking without sentence embeddings: %s", reason)
        return
    if loaded.model.vectors is None or loaded.model.vectors.key != embedder.key:
        loaded.model.vectors = PaperVectors(embedder)
        loaded.vector_files, loaded.vectors_seq = set(), 0
        _read_queries(loaded.model.vectors, folder)
    _attach_vectors(loaded, folder)


# Per embedder, the keywords this process read from or wrote to the cache folder.
_SAVED_QUERIES: dict[str, set[str]] = {}


def _query_files(folder: Path, key: str) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if (m := _QUERY_FILE.fullmatch(p.name)) and m.group(1) == key)
    except OSError:
        return []


def _read_queries(vectors: PaperVectors, folder: Path) -> None:
    """Keywords embedded by earlier runs: a send of ten thousand readers embeds only the keywords that are new."""
    for path in _query_files(folder, vectors.key):
        try:
            with np.load(path, allow_pickle=False) as data:
                texts = json.loads(bytes(data["texts"]).decode("utf-8"))
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    raise ValueError("texts is not a list of strings")
                matrix = np.asarray(data["vectors"], dtype=np.float32)
            if matrix.shape != (len(texts), vectors.width):
                raise ValueError("texts and vectors differ in length")
        except _BAD_FILE as exc:
            log.warning("model cache: ignoring the damaged %s (%s); its keywords are embedded again", path, exc)
            continue
        vectors.add_queries(texts, matrix)
        _SAVED_QUERIES.setdefault(vectors.key, set()).update(texts)


def _keep_new_queries(model: RankModel, database: Path, save: bool) -> None:
    """With `save` (a send), keywords this model embeds from now on are saved beside the database; without (a
    preview), nothing is written. Query files are merged into one when there are more than ROW_FILES_KEPT."""
    vectors = model.vectors
    if vectors is None:
        return
    if not save:
        vectors.on_new_queries = None
        return
    folder = cache_folder(database)

    saved = _SAVED_QUERIES.setdefault(vectors.key, set())

    def keep(texts: list[str], matrix: np.ndarray) -> None:
        try:
            with _cache_lock(folder):
                _write_queries(folder, vectors.key, texts, matrix)
                saved.update(texts)
                files = _query_files(folder, vectors.key)
                if len(files) > ROW_FILES_KEPT:
                    _merge_query_files(folder, vectors, files)
        except OSError as exc:  # a cache: the keywords are embedded again next time
            log.warning("model cache: could not save embedded keywords in %s (%s)", folder, exc)

    vectors.on_new_queries = keep
    unsaved = [t for t in vectors.known_queries() if t not in saved]  # embedded by a preview in this process
    if unsaved:
        keep(unsaved, vectors.queries(unsaved))


def _write_queries(folder: Path, key: str, texts: list[str], matrix: np.ndarray) -> None:
    name = f"queries-{key}-{secrets.token_hex(4)}.npz"
    arrays: dict[str, Any] = {
        "texts": np.frombuffer(json.dumps(texts).encode("utf-8"), dtype=np.uint8),
        "vectors": np.asarray(matrix, dtype=np.float16),
    }
    write_atomically(folder / name, lambda out: np.savez(out, **arrays))


def _merge_query_files(folder: Path, vectors: PaperVectors, files: list[Path]) -> None:
    texts = vectors.known_queries()
    if texts:
        _write_queries(folder, vectors.key, texts, vectors.queries(texts))
    for path in files:
        path.unlink(missing_ok=True)


def _vector_files(folder: Path, key: str) -> dict[str, int]:
    """Vector files of one embedder: name -> the last paper sequence number they cover."""
    try:
        names = [entry.name for entry in folder.iterdir()]
    except OSError:
        return {}
    return {
        name: int(match.group(2))
        for name in names
        if (match := _VECTOR_FILE.fullmatch(name)) is not None and match.group(1) == key
    }


def _load_vectors(path: Path, ids: bytes) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        if bytes(data["ids"]) != ids:
            raise ValueError(f"{path.name} changed since it was listed")
        return np.asarray(data["vectors"], dtype=np.float32)


def _attach_vectors(loaded: _Loaded, folder: Path) -> None:
    vectors = loaded.model.vectors
    if vectors is None:
        return
    files = _vector_files(folder, vectors.key)
    for name, seq, raw_ids, ids, digests in _unseen_files(
        folder, files, loaded.vector_files, "papers are embedded again"
    ):
        vectors.add(ids, digests, functools.partial(_load_vectors, folder / name, raw_ids))
        loaded.vector_files.add(name)
        loaded.vectors_seq = max(loaded.vectors_seq, seq)


def _write_vectors(folder: Path, key: str, seq: int, ids: list[str], digests: np.ndarray, matrix: np.ndarray) -> str:
    """A new vector file (call under _cache_lock); float16 halves the size and moves a cosine by < 0.001."""
    name = f"vectors-{key}-{seq:012d}-{secrets.token_hex(4)}.npz"
    arrays: dict[str, Any] = {
        "vectors": np.asarray(matrix, dtype=np.float16),
        "ids": np.frombuffer("\n".join(ids).encode("utf-8"), dtype=np.uint8),
        "digests": np.asarray(digests, dtype=np.uint64),
    }
    write_atomically(folder / name, lambda out: np.savez(out, **arrays))
    return name


def _store_vectors(store: Store, loaded: _Loaded, folder: Path, settings: EmbeddingSettings) -> int:
    """After an ingest: embed the papers committed since the last vector file (at most EMBED_BACKLOG of the most
    recent when there is none) and store them, EMBED_BATCH at a time; returns how many were embedded."""
    _with_vectors(loaded, folder, settings)
    vectors = loaded.model.vectors
    if vectors is None:
        return 0
    high = store.max_seq()
    low = max(loaded.vectors_seq, high - EMBED_BACKLOG)
    done = 0
    for start in range(low, high, EMBED_BATCH):
        stop = min(high, start + EMBED_BATCH)
        papers = [p for p in store.papers_after_seq(start, stop) if p.id is not None]
        matrix = vectors.papers(papers)  # stored ones are reused: a paper is embedded once
        digests = np.array([vector_digest(p) for p in papers], dtype=np.uint64)
        with _cache_lock(folder):
            _write_vectors(folder, vectors.key, stop, [p.id or "" for p in papers], digests, matrix)
            _attach_vectors(loaded, folder)
        done += len(papers)
    with _cache_lock(folder):
        _remove_other_vectors(folder, vectors.key)
        _merge_vector_files(folder, loaded)
    return done


def _remove_other_vectors(folder: Path, key: str) -> None:
    """Vector files of another embedder (the model file or max_tokens changed): never read again."""
    for entry in list(folder.iterdir()):
        match = _VECTOR_FILE.fullmatch(entry.name)
        if match is not None and match.group(1) != key:
            entry.unlink(missing_ok=True)


def _merge_vector_files(folder: Path, loaded: _Loaded) -> None:
    """One vector file per ingest would pile up for years: while there are more than ROW_FILES_KEPT, the two
    neighbours (in sequence order) with the fewest bytes together become one, so that a paper's vector is rewritten
    about log(papers) times over its life, not at every merge (under _cache_lock)."""
    vectors = loaded.model.vectors
    if vectors is None:
        return
    while True:
        files = sorted((seq, name) for name, seq in _vector_files(folder, vectors.key).items())
        if len(files) <= ROW_FILES_KEPT:
            return
        sizes = [(folder / name).stat().st_size for _seq, name in files]
        pair = min(range(len(files) - 1), key=lambda i: sizes[i] + sizes[i + 1])
        ids: list[str] = []
        digests: list[np.ndarray] = []
        matrices: list[np.ndarray] = []
        for _seq, name in files[pair : pair + 2]:
            try:
                raw_ids, part, part_digests = _read_row_ids(folder / name)
                matrix = _load_vectors(folder / name, raw_ids)
                if matrix.shape[0] != len(part):
                    raise ValueError("ids and vectors differ in length")
            except _BAD_FILE:
                (folder / name).unlink(missing_ok=True)  # its papers are embedded again when needed
                break
            ids += part
            digests.append(part_digests)
            matrices.append(matrix)
        else:
            _write_vectors(folder, vectors.key, files[pair + 1][0], ids, np.concatenate(digests), np.vstack(matrices))
            for _seq, name in files[pair : pair + 2]:
                (folder / name).unlink(missing_ok=True)
        loaded.vector_files.clear()
        vectors.forget_stored()
        _attach_vectors(loaded, folder)


@dataclass(frozen=True)
class Refresh:
    """What refresh_model did: "fitted" (with why), "encoded" (rows for new papers), or "current"; and how many
    papers it embedded (sentence vectors)."""

    action: str
    papers: int
    why: str = ""
    embedded: int = 0


def refresh_model(store: Store, policy: ModelPolicy | None = None) -> Refresh:
    """After an ingest: bring the saved model up to the store. Refits when there is no usable model or it is
    `stale_after` papers behind; otherwise encodes the papers committed since the last row file (a new row file),
    merging row files when they pile up. Then stores the sentence vectors of the new papers (when embeddings are
    on). Cost: the new papers, or one bounded fit."""
    policy = policy or ModelPolicy()
    loaded, refresh = _refresh_rows(store, policy)
    embedded = _store_vectors(store, loaded, cache_folder(store.path), policy.embeddings)
    return Refresh(refresh.action, refresh.papers, refresh.why, embedded)


def _refresh_rows(store: Store, policy: ModelPolicy) -> tuple[_Loaded, Refresh]:
    folder = cache_folder(store.path)
    current = _current(store, policy)
    if isinstance(current, _Loaded) and current.signature is None:
        current = "it was never saved"
    if isinstance(current, str):
        if current != "there is none yet":
            log.warning("model cache %s: %s; fitting it again", folder, current)
        loaded = _fit_and_keep(store, policy, save=True, why=current)
        return loaded, Refresh("fitted", loaded.header.corpus_size, current)
    high = store.max_seq()
    behind = store.count_papers_after_seq(current.header.fitted_seq, high)
    if behind >= policy.stale_after(current.header.corpus_size):
        why = f"{behind} new paper(s) since the last fit"
        loaded = _fit_and_keep(store, policy, save=True, why=why)
        if loaded.signature is not None:  # saved: rows for the new papers the fit did not read (a big day)
            _encode_outside_fit(store, loaded, current.covered_seq, high)
        return loaded, Refresh("fitted", loaded.header.corpus_size, why)
    if high <= current.covered_seq:
        return current, Refresh("current", 0)
    new = store.papers_after_seq(current.covered_seq, high)
    with_ids = [p for p in new if p.id is not None]
    rows = current.model.encode(with_ids)
    digests = np.array([text_digest(p) for p in with_ids], dtype=np.uint64)
    ids = [p.id or "" for p in with_ids]
    with _cache_lock(folder):
        if _signature(folder / MODEL_FILE) != current.signature:
            return current, Refresh("current", 0)  # another process refitted meanwhile: its model covers these
        _write_rows(folder, current.header.tag, high, ids, digests, rows)
        _attach_rows(current, folder)
        _merge_row_files(folder, current)
    return current, Refresh("encoded", len(with_ids))


# Papers encoded and written per row file when a big ingest brings more new papers than a fit reads.
ENCODE_BATCH = 20_000


def _encode_outside_fit(store: Store, loaded: _Loaded, low: int, high: int) -> None:
    """Rows for the papers committed after `low` (what the old rows covered) that the new fit's corpus does not
    hold: the next send's candidates, encoded now, a batch at a time, rather than in the send."""
    folder = cache_folder(store.path)
    known = loaded.model.stored_ids()
    start = low
    while start < high:
        stop = min(high, start + ENCODE_BATCH)
        papers = [p for p in store.papers_after_seq(start, stop) if p.id is not None and p.id not in known]
        if papers:
            rows = loaded.model.encode(papers)
            digests = np.array([text_digest(p) for p in papers], dtype=np.uint64)
            with _cache_lock(folder):
                if _signature(folder / MODEL_FILE) != loaded.signature:
                    return  # another process saved another model meanwhile
                _write_rows(folder, loaded.header.tag, stop, [p.id or "" for p in papers], digests, rows)
        start = stop
    with _cache_lock(folder):
        if _signature(folder / MODEL_FILE) == loaded.signature:
            _attach_rows(loaded, folder)


def _merge_row_files(folder: Path, loaded: _Loaded) -> None:
    """Many small row files (one per ingest) become one: planning then opens few files (under _cache_lock)."""
    files = _row_files(folder, loaded.header.tag)
    small = sorted((seq, name) for name, seq in files.items() if seq > loaded.header.fitted_seq)
    if len(files) <= ROW_FILES_KEPT or len(small) < 2:
        return
    ids: list[str] = []
    digests: list[np.ndarray] = []
    matrices = []
    for _seq, name in small:
        path = folder / name
        try:
            raw_ids, part, part_digests = _read_row_ids(path)
            matrix = _load_matrix(path, raw_ids)
            if matrix.shape[0] != len(part):
                raise ValueError("ids and rows differ in length")
        except _BAD_FILE:
            return  # left as they are; _attach_rows already ignores a damaged one
        ids += part
        digests.append(part_digests)
        matrices.append(matrix)
    _write_rows(
        folder, loaded.header.tag, small[-1][0], ids, np.concatenate(digests), sparse.vstack(matrices, format="csr")
    )
    for _seq, name in small:
        (folder / name).unlink(missing_ok=True)
    _attach_rows(loaded, folder)  # the merged rows now answer for their papers


def model_source(policy: ModelPolicy | None = None, *, save: bool) -> Callable[[Store], RankModel]:
    """planning_model with its policy bound: what plan functions take to get a model only when they need one."""
    return lambda store: planning_model(store, policy, save=save)
