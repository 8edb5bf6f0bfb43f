"""PostgreSQL's COPY text format built from numpy columns, without a Python loop over rows.

Each row is first laid out in a fixed-width byte matrix, one zero-padded slot per cell followed by
its separator; dropping the zero bytes then leaves exactly the COPY text. Integers get their digits
from vectorized arithmetic, text columns are codes into a vocabulary whose strings are encoded once
(:class:`TextCells`), and NULL is ``\\N``. Generated text never holds a tab, newline, carriage
return, backslash or NUL, so no cell needs escaping; :class:`TextCells` checks that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_ESCAPED = np.zeros(256, dtype=bool)
_ESCAPED[[9, 10, 13, 92]] = True  # tab, newline, carriage return, backslash
_NULL = np.frombuffer(b"\\N", dtype=np.uint8)


class TextCells:
    """Every string of a vocabulary as a zero-padded byte row; code -1 (NULL) reads ``\\N``."""

    def __init__(self, items: np.ndarray) -> None:
        """``items``: a vocabulary's strings as ASCII bytes (a numpy ``S`` array, code order)."""
        width = max(2, items.dtype.itemsize)
        padded = np.append(items.astype(f"S{width}"), np.array([b"\\N"], dtype=f"S{width}"))
        self.matrix = padded.view(np.uint8).reshape(len(padded), width)
        if _has_special(self.matrix[:-1]):
            raise ValueError("a generated value would need COPY escaping")
        self.lens = (self.matrix != 0).sum(axis=1).astype(np.int64)

    def cells(self, codes: np.ndarray) -> np.ndarray:
        width = int(self.lens[codes].max(initial=1))
        cells: np.ndarray = self.matrix[:, :width][codes]
        return cells


def _has_special(matrix: np.ndarray) -> bool:
    """A tab, newline, carriage return or backslash, or a NUL byte before a string's end."""
    embedded_nul = (matrix[:, :-1] == 0) & (matrix[:, 1:] != 0)
    return bool(_ESCAPED[matrix].any() or embedded_nul.any())


def _int_cells(values: np.ndarray, nulls: np.ndarray | None) -> np.ndarray:
    v = values.astype(np.int64)
    if nulls is not None:
        v = np.where(nulls, 0, v)
    if len(v) and v.min() < 0:
        raise ValueError("the generator makes no negative integers")
    width = max(2, len(str(int(v.max(initial=0)))))
    scale = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (v[:, None] // scale) % 10
    # no leading zeros: a position counts from the first non-zero digit (or the last digit)
    significant = np.maximum.accumulate(digits > 0, axis=1)
    significant[:, -1] = True
    out = np.where(significant, digits + 48, 0).astype(np.uint8)
    if nulls is not None and nulls.any():
        out[nulls] = 0
        out[nulls, :2] = _NULL
    return out


def _cells(values: np.ndarray, text: TextCells | None) -> np.ndarray:
    if text is not None:
        return text.cells(values)
    if isinstance(values, np.ma.MaskedArray):  # a nullable integer column
        return _int_cells(values.data, np.ma.getmaskarray(values))
    if values.dtype.kind == "S":  # fixed width ASCII (uuids)
        return values.view(np.uint8).reshape(len(values), values.dtype.itemsize)
    if values.dtype.kind == "b":
        return np.where(values, ord("t"), ord("f")).astype(np.uint8)[:, None]
    if values.dtype.kind in "iu":
        return _int_cells(values, None)
    raise TypeError(f"no COPY text encoding for {values.dtype}")


def encode(columns: Sequence[np.ndarray], text: Sequence[TextCells | None]) -> bytes:
    """The rows of ``columns`` (all of one length) in COPY text format.

    ``text[j]``, when given, says column ``j`` holds codes into that vocabulary.
    """
    cells = [_cells(c, t) for c, t in zip(columns, text, strict=True)]
    width = sum(c.shape[1] + 1 for c in cells)
    matrix = np.zeros((len(columns[0]), width), dtype=np.uint8)
    at = 0
    for j, cell in enumerate(cells):
        matrix[:, at : at + cell.shape[1]] = cell
        at += cell.shape[1]
        matrix[:, at] = 10 if j == len(cells) - 1 else 9
        at += 1
    flat = matrix.ravel()
    out: bytes = flat[flat != 0].tobytes()
    return out
