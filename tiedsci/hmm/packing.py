"""Time-major packing of many sequences (the layout of torch's ``PackedSequence``).

Sequences are sorted by decreasing length; the frames of time step ``t`` of every sequence still
running at ``t`` are stored in one contiguous block of rows ``starts[t] : starts[t] +
batch_sizes[t]``. A recursion over time then touches one contiguous block per step for all
sequences at once, with no padding and no masks, and the rows of sequences that have ended are
simply not part of later blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Packing", "make_packing"]


@dataclass(frozen=True, eq=False)
class Packing:
    """Index maps between concatenated frames and time-major packed rows.

    Attributes
    ----------
    lengths : ndarray of int, shape (n_sequences,)
        Sequence lengths in the caller's order.
    order : ndarray of int, shape (n_sequences,)
        ``order[i]`` is the caller's index of the ``i``-th longest sequence.
    batch_sizes : tuple of int, length max(lengths)
        Number of sequences still running at each time step.
    starts : tuple of int, length max(lengths)
        First packed row of each time step.
    row_of_frame : ndarray of int, shape (n_frames,)
        Packed row of each frame of the concatenated input.
    seq_of_row : ndarray of int, shape (n_frames,)
        Sorted sequence position (``0..n_sequences-1``) of each packed row.
    prev_rows : ndarray of int, shape (n_frames - batch_sizes[0],)
        For packed rows ``batch_sizes[0]:`` (every frame with t >= 1), the row of the same
        sequence at ``t - 1``.
    last_rows : ndarray of int, shape (n_sequences,)
        Packed row of the last frame of each sorted sequence.
    """

    lengths: np.ndarray
    order: np.ndarray
    batch_sizes: tuple[int, ...]
    starts: tuple[int, ...]
    row_of_frame: np.ndarray
    seq_of_row: np.ndarray
    prev_rows: np.ndarray
    last_rows: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.row_of_frame.shape[0])

    @property
    def n_sequences(self) -> int:
        return int(self.lengths.shape[0])

    def pack(self, x: np.ndarray) -> np.ndarray:
        """Reorder concatenated frames, shape (n_frames, ...), into packed rows."""
        out = np.empty_like(x)
        out[self.row_of_frame] = x
        return out

    def unpack(self, x: np.ndarray) -> np.ndarray:
        """Packed rows, shape (n_frames, ...), back to the caller's concatenated order."""
        return x[self.row_of_frame]

    def per_sequence(self, x_sorted: np.ndarray) -> np.ndarray:
        """Values indexed by sorted sequence position back to the caller's sequence order."""
        out = np.empty_like(x_sorted)
        out[self.order] = x_sorted
        return out


def make_packing(lengths: np.ndarray) -> Packing:
    """Build the packing for sequences of the given lengths (each >= 1).

    Parameters
    ----------
    lengths : array of int, shape (n_sequences,)

    Returns
    -------
    Packing
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n_seq = lengths.shape[0]
    order = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[order]
    t_max = int(sorted_len[0])
    # batch_sizes[t] = number of sequences with length > t
    asc = sorted_len[::-1]
    batch = n_seq - np.searchsorted(asc, np.arange(t_max), side="right")
    starts = np.concatenate([[0], np.cumsum(batch)[:-1]]).astype(np.int64)
    pos = np.empty(n_seq, dtype=np.int64)
    pos[order] = np.arange(n_seq)
    seq_of_frame = np.repeat(np.arange(n_seq), lengths)
    seq_begin = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    t_of_frame = np.arange(int(lengths.sum())) - seq_begin[seq_of_frame]
    row_of_frame = starts[t_of_frame] + pos[seq_of_frame]
    seq_of_row = np.empty_like(row_of_frame)
    seq_of_row[row_of_frame] = pos[seq_of_frame]
    rows_after_first = np.arange(int(batch[0]), int(lengths.sum()))
    t_of_row = np.searchsorted(starts, rows_after_first, side="right") - 1
    prev_rows = starts[t_of_row - 1] + (rows_after_first - starts[t_of_row])
    last_rows = starts[sorted_len - 1] + np.arange(n_seq)
    return Packing(
        lengths=lengths,
        order=order,
        batch_sizes=tuple(int(b) for b in batch),
        starts=tuple(int(s) for s in starts),
        row_of_frame=row_of_frame,
        seq_of_row=seq_of_row,
        prev_rows=prev_rows,
        last_rows=last_rows,
    )
