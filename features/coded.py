"""Text columns as dictionary codes: the form in which ``botfilter score`` hands Arrow text to
the features, without a Python object per row.

The features only ever group rows by a text column (which rows share a message, a contact, a
tenant), compare it with a constant (``type == "click"``) or parse its distinct values (IP
addresses, User-Agents). Codes and the distinct values do all three. Building a Python string
for every row, then hashing those strings again to group them, was about a sixth of a scoring
worker's CPU. :func:`features.pipeline.feature_block` takes a column either as an object array
(the online API, training) or as :class:`Coded` (batch scoring), with the same results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True, eq=False)  # compared as a column, never as a value: no __eq__/__hash__
class Coded:
    """A text column as ``codes`` into ``dictionary`` (-1: missing). Codes name groups only: two
    rows share a code exactly when they hold the same text; some codes may name no row."""

    codes: np.ndarray  # int64, one per row
    dictionary: pa.Array  # the distinct texts (pa.string())
    _uniques: list[np.ndarray] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def encode(cls, values: pa.Array | pa.ChunkedArray) -> Coded:
        """Arrow text as codes (Arrow hashes it: no Python object per row); a dictionary
        array's codes are its indices."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
        if pa.types.is_dictionary(values.type):
            # (codes name texts: a dictionary repeating a value, or holding a null, is redone)
            dictionary = values.dictionary
            if dictionary.null_count or pc.count_distinct(dictionary).as_py() != len(dictionary):
                values = pc.dictionary_encode(values.dictionary_decode())
        else:
            values = pc.dictionary_encode(values)
        codes = pc.fill_null(values.indices, -1).to_numpy(zero_copy_only=False)
        return cls(codes.astype(np.int64, copy=False), values.dictionary.cast(pa.string()))

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def n_codes(self) -> int:
        """How many codes there can be (the dictionary's size)."""
        return len(self.dictionary)

    def uniques(self) -> np.ndarray:
        """The dictionary as Python strings (built once: the distinct values only)."""
        if not self._uniques:
            self._uniques.append(self.dictionary.to_numpy(zero_copy_only=False).astype(object))
        return self._uniques[0]

    def at(self, rows: np.ndarray | slice) -> Coded:
        """The rows ``rows`` (positions or a slice), sharing the dictionary."""
        return Coded(self.codes[rows], self.dictionary, self._uniques)

    def missing(self) -> np.ndarray:
        return self.codes < 0

    def equals(self, value: str) -> np.ndarray:
        """Per row, whether it holds ``value`` (missing: False)."""
        hit = np.append(self.uniques() == value, False)  # the last slot: code -1
        return hit[self.codes]

    def objects(self) -> np.ndarray:
        """One Python object per row (None where missing), as an object column holds them:
        cheap only where the values are few (each distinct string is shared)."""
        return np.append(self.uniques(), np.array([None], dtype=object))[self.codes]

    def arrow(self) -> pa.Array:
        """The rows as Arrow text."""
        return self.dictionary.take(pa.array(self.codes, mask=self.codes < 0))


def as_objects(values: Any) -> np.ndarray:
    """A column as an object array, whatever its form (``Coded``, Arrow text, objects)."""
    if isinstance(values, Coded):
        return values.objects()
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.to_numpy(zero_copy_only=False).astype(object)
    return np.asarray(values, dtype=object)


def rows_of(values: Any, rows: np.ndarray | slice) -> Any:
    """``values`` at ``rows`` whatever its form (numpy, ``Coded``, Arrow)."""
    if isinstance(values, Coded):
        return values.at(rows)
    if isinstance(values, pa.Array | pa.ChunkedArray):
        if isinstance(rows, slice):
            start, stop, _ = rows.indices(len(values))
            return values.slice(start, stop - start)
        return values.take(pa.array(rows))
    return values[rows]
