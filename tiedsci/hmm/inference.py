"""Forward-backward, Viterbi and posteriors over many sequences at once.

All functions are pure and engine-generic (numpy or torch, see :mod:`tiedsci.hmm.engines`).
Frames are in the time-major packed order of :mod:`tiedsci.hmm.packing`, so one step of a
recursion is one small matrix product over every sequence still running.

Numerics: scaled probability space. Each frame's emission log-probabilities are shifted by their
maximum over states before exponentiation, and the forward variables are renormalised at every
step (``c_t`` are the normalisers), so nothing under- or overflows however long a sequence is
(tested at 10^6 steps). The log-likelihood is ``sum_t log c_t + shift_t``. Zero probabilities
(left-right topologies) stay exactly zero. Viterbi runs in log space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.hmm.engines import Engine
from tiedsci.hmm.packing import Packing

__all__ = ["PackedIndex", "Posteriors", "index_on", "forward_backward", "log_likelihood",
           "viterbi"]

Array = Any


@dataclass(frozen=True, eq=False)
class PackedIndex:
    """A :class:`Packing` with its index arrays moved onto an engine's device."""

    packing: Packing
    seq_of_row: Array
    prev_rows: Array
    last_rows: Array
    chunking: Any = None


def index_on(packing: Packing, eng: Engine, chunking: Any = None) -> PackedIndex:
    """Move the index arrays of ``packing`` to ``eng`` (once per fit).

    With ``chunking`` (:class:`tiedsci.hmm.chunked.Chunking`, whose ``packing`` must be
    ``packing``), long sequences are processed as batches of chunks by :func:`forward_backward`.
    """
    return PackedIndex(packing, eng.asindex(packing.seq_of_row), eng.asindex(packing.prev_rows),
                       eng.asindex(packing.last_rows), chunking)


@dataclass(frozen=True, eq=False)
class Posteriors:
    """Result of :func:`forward_backward` (engine arrays unless stated).

    Attributes
    ----------
    gamma : array, shape (n_frames, n_states)
        State posteriors per packed row; each row sums to 1.
    start : array, shape (n_states,)
        Sum over sequences of the posteriors at t = 0.
    trans : array, shape (n_states, n_states)
        Expected transition counts summed over all sequences and steps.
    log_likelihood : ndarray, shape (n_sequences,)
        numpy; log p(sequence) per sequence, in the caller's sequence order.
    """

    gamma: Array
    start: Array
    trans: Array
    log_likelihood: np.ndarray


def _scaled_emissions(log_frame: Array, eng: Engine) -> tuple[Array, Array]:
    shift = eng.rowmax(log_frame)
    shift = eng.where(eng.isfinite(shift), shift, 0.0)
    return eng.exp(log_frame - shift[:, None]), shift


def _forward(start: Array, trans: Array, b: Array, pk: Packing,
             eng: Engine) -> tuple[Array, Array]:
    """Scaled forward pass; returns alpha (rows, K) and the normalisers c (rows,)."""
    n_rows, _ = b.shape
    alpha = eng.empty(tuple(b.shape))
    c = eng.empty((n_rows,))
    tiny = eng.tiny
    bs, st = pk.batch_sizes, pk.starts
    n = bs[0]
    a = start[None, :] * b[0:n]
    ct = eng.rowsum(a)
    c[0:n] = ct
    alpha[0:n] = a / eng.maximum(ct, tiny)[:, None]
    for t in range(1, len(bs)):
        n, s, p = bs[t], st[t], st[t - 1]
        a = (alpha[p:p + n] @ trans) * b[s:s + n]
        ct = eng.rowsum(a)
        c[s:s + n] = ct
        alpha[s:s + n] = a / eng.maximum(ct, tiny)[:, None]
    return alpha, c


def _backward(trans: Array, b_over_c: Array, pk: Packing, eng: Engine) -> Array:
    """Scaled backward pass with ``b_over_c = b / c``; returns beta (rows, K)."""
    beta = eng.ones(tuple(b_over_c.shape))
    trans_t = trans.T
    bs, st = pk.batch_sizes, pk.starts
    for t in range(len(bs) - 2, -1, -1):
        n, s, q = bs[t + 1], st[t], st[t + 1]
        beta[s:s + n] = (b_over_c[q:q + n] * beta[q:q + n]) @ trans_t
    return beta


def _sequence_loglik(c: Array, shift: Array, idx: PackedIndex, eng: Engine) -> np.ndarray:
    log_c = eng.log(c) + shift
    per_seq = eng.index_add(idx.packing.n_sequences, idx.seq_of_row, log_c)
    return idx.packing.per_sequence(np.asarray(eng.to_numpy(per_seq), dtype=np.float64))


def _kernels(eng: Engine, pk: Packing) -> Any:
    """Compiled one-sequence kernels of the engine (see ``NumpyEngine.sequence_kernels``), used
    for a single sequence, where the batched recursion has nothing to batch; else None."""
    get = getattr(eng, "sequence_kernels", None)
    return get() if get is not None and pk.n_sequences == 1 else None


def _host(startprob: np.ndarray, transmat: np.ndarray, b: Array) -> tuple[np.ndarray, ...]:
    return (np.ascontiguousarray(startprob, dtype=np.float64),
            np.ascontiguousarray(transmat, dtype=np.float64),
            np.ascontiguousarray(b, dtype=np.float64))


def _forward_backward_compiled(kernels: Any, startprob: np.ndarray, transmat: np.ndarray,
                               log_frame: Array, idx: PackedIndex, eng: Engine) -> Posteriors:
    """:func:`forward_backward` of one sequence with compiled kernels (same scaled numerics:
    emissions shifted by their row maximum, so the kernels never underflow)."""
    b, shift = _scaled_emissions(log_frame, eng)
    start, trans, frames = _host(startprob, transmat, b)
    _, alpha, scale = kernels.forward_scaling(start, trans, frames)
    beta = kernels.backward_scaling(start, trans, frames, scale)
    gamma = alpha * beta
    gamma /= gamma.sum(1, keepdims=True)
    xi = (kernels.compute_scaling_xi_sum(alpha, trans, beta, frames) if len(frames) > 1
          else trans * 0.0)
    c = 1.0 / scale
    return Posteriors(gamma, gamma[0].copy(), xi, _sequence_loglik(c, shift, idx, eng))


def forward_backward(startprob: np.ndarray, transmat: np.ndarray, log_frame: Array,
                     idx: PackedIndex, eng: Engine) -> Posteriors:
    """Posterior state probabilities and expected transition counts of every sequence.

    Parameters
    ----------
    startprob : ndarray, shape (n_states,)
    transmat : ndarray, shape (n_states, n_states)
        Row-stochastic; zeros stay zero.
    log_frame : array, shape (n_frames, n_states)
        Emission log-probabilities in packed order (engine array).
    idx : PackedIndex
    eng : Engine

    Returns
    -------
    Posteriors
    """
    if idx.chunking is not None:
        from tiedsci.hmm.chunked import forward_backward_chunked

        return forward_backward_chunked(startprob, transmat, log_frame, idx.chunking, eng)
    pk = idx.packing
    kernels = _kernels(eng, pk)
    if kernels is not None:
        return _forward_backward_compiled(kernels, startprob, transmat, log_frame, idx, eng)
    start = eng.asarray(startprob)
    trans = eng.asarray(transmat)
    b, shift = _scaled_emissions(log_frame, eng)
    alpha, c = _forward(start, trans, b, pk, eng)
    b_over_c = b / eng.maximum(c, eng.tiny)[:, None]
    beta = _backward(trans, b_over_c, pk, eng)
    gamma = alpha * beta
    n0 = pk.batch_sizes[0]
    start_post = gamma[0:n0].sum(0)
    if pk.n_frames > n0:
        prev = eng.take(alpha, idx.prev_rows)
        xi = trans * (prev.T @ (b_over_c[n0:] * beta[n0:]))
    else:
        xi = trans * 0.0
    return Posteriors(gamma, start_post, xi, _sequence_loglik(c, shift, idx, eng))


def log_likelihood(startprob: np.ndarray, transmat: np.ndarray, log_frame: Array,
                   idx: PackedIndex, eng: Engine) -> np.ndarray:
    """Forward pass only: log p(sequence), shape (n_sequences,), in the caller's order."""
    if idx.chunking is not None:
        return forward_backward(startprob, transmat, log_frame, idx, eng).log_likelihood
    b, shift = _scaled_emissions(log_frame, eng)
    kernels = _kernels(eng, idx.packing)
    if kernels is not None:
        c = 1.0 / kernels.forward_scaling(*_host(startprob, transmat, b))[2]
    else:
        _, c = _forward(eng.asarray(startprob), eng.asarray(transmat), b, idx.packing, eng)
    return _sequence_loglik(c, shift, idx, eng)


def viterbi(startprob: np.ndarray, transmat: np.ndarray, log_frame: Array, idx: PackedIndex,
            eng: Engine) -> tuple[np.ndarray, np.ndarray]:
    """Most likely state path of every sequence (log-space Viterbi).

    Returns
    -------
    log_prob : ndarray, shape (n_sequences,)
        Log-probability of each best path, in the caller's sequence order.
    states : ndarray of int, shape (n_frames,)
        Best state per packed row.
    """
    if idx.chunking is not None:
        from tiedsci.hmm.chunked import viterbi_chunked

        return viterbi_chunked(startprob, transmat, log_frame, idx.chunking, eng)
    pk = idx.packing
    with np.errstate(divide="ignore"):
        log_start = eng.asarray(np.log(startprob))
        log_trans = eng.asarray(np.log(transmat))
    n_rows, k = log_frame.shape
    delta = eng.empty((n_rows, k))
    psi = []
    bs, st = pk.batch_sizes, pk.starts
    n = bs[0]
    delta[0:n] = log_start[None, :] + log_frame[0:n]
    for t in range(1, len(bs)):
        n, s, p = bs[t], st[t], st[t - 1]
        best, arg = eng.max_argmax(delta[p:p + n][:, :, None] + log_trans[None, :, :], 1)
        delta[s:s + n] = best + log_frame[s:s + n]
        psi.append(arg)
    last = eng.take(delta, idx.last_rows)
    best_last, arg_last = eng.max_argmax(last, 1)
    states = np.zeros(n_rows, dtype=np.int64)
    states[pk.last_rows] = eng.to_numpy(arg_last)
    psi_np = [np.asarray(eng.to_numpy(a), dtype=np.int64) for a in psi]
    for t in range(len(bs) - 1, 0, -1):
        n, s, p = bs[t], st[t], st[t - 1]
        cur = states[s:s + n]
        states[p:p + n] = psi_np[t - 1][np.arange(n), cur]
    best = pk.per_sequence(np.asarray(eng.to_numpy(best_last), dtype=np.float64))
    return best, states
