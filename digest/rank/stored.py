"""Stored rows of papers, loaded when first needed: what the TF-IDF rows (digest.rank.model) and the sentence
vectors (digest.rank.embeddings) kept in the model cache have in common."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

Matrix = TypeVar("Matrix")


class StoredBlock(Generic[Matrix]):
    """Ids and text digests up front; the matrix loaded (and converted) on first use and checked to have one row
    per id and `width` columns. A load that fails for any reason (a file gone, damaged, swapped) gives None: the
    caller encodes those papers afresh, never fails."""

    def __init__(
        self,
        ids: Sequence[str],
        digests: np.ndarray,
        load: Callable[[], object],
        width: int,
        convert: Callable[[object], Matrix],
    ) -> None:
        self.ids = list(ids)
        self.digests = np.asarray(digests, dtype=np.uint64)
        self._load = load
        self._width = width
        self._convert = convert
        self._matrix: Matrix | None = None
        self._failed = False

    @property
    def matrix(self) -> Matrix | None:
        if self._matrix is None and not self._failed:
            try:
                matrix = self._convert(self._load())
                shape = getattr(matrix, "shape", None)
                if shape != (len(self.ids), self._width):
                    raise ValueError(f"rows of shape {shape}, expected {(len(self.ids), self._width)}")
                self._matrix = matrix
            except Exception:  # any reader's error: those papers are encoded again
                self._failed = True
        return self._matrix
