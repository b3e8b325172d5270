"""The map-reduce seam: one small interface, a serial and a Dask implementation.

tiedsci's distributed engines are all one shape, because *a tie sums*: the E-step of Baum-Welch is
a map over shards of sequences whose (already pooled) sufficient statistics are summed; a
Gauss-Newton step with a Schur complement is a map over batches of datasets whose reduced normal
matrices are summed. An executor therefore needs only three things:

* ``put(shards)``: make the shards resident where the work runs (once, before the iterations);
* ``map_reduce(fn, handles, *args, combine=operator.add)``: ``combine(fn(s0, *args), fn(s1, *args),
  ...)`` as a tree;
* ``map(fn, handles, *args)``: the per-shard results, for steps that must come back one by one.

Fits that keep per-shard *state* between iterations (the joint refinement keeps each batch's local
parameters and normal-matrix blocks on its worker) also use

* ``map_persist(fn, handles, *args)``: new handles to ``fn(h, *args)``, left where they are
  computed (nothing comes back); with Dask each new shard is a task whose inputs the scheduler
  remembers, so a shard lost with its worker is recomputed from its lineage.

``SerialExecutor`` (the default) runs everything here, in order. ``DaskExecutor`` uses
``dask.distributed``: shards become futures created by a task (so that the scheduler can recompute
a shard whose worker died), ``client.map`` runs the tasks with retries, and a tree of
``client.submit(combine, a, b)`` sums on the workers so only the final sum travels to the client.
Dask is an optional dependency (``pip install tiedsci[dask]``) imported only by ``DaskExecutor``.
"""

from __future__ import annotations

import operator
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Executor", "StatefulExecutor", "SerialExecutor", "DaskExecutor", "as_executor",
           "payload_bytes"]


@runtime_checkable
class Executor(Protocol):
    """What a distributed fit needs from an execution engine."""

    def put(self, shards: Sequence[Any]) -> list[Any]:
        """Make ``shards`` resident; return handles to pass to :meth:`map_reduce`."""
        ...

    def map(self, fn: Callable[..., Any], handles: Sequence[Any], *args: Any) -> list[Any]:
        """``[fn(h, *args) for h in handles]``."""
        ...

    def map_reduce(self, fn: Callable[..., Any], handles: Sequence[Any], *args: Any,
                   combine: Callable[[Any, Any], Any] = operator.add) -> Any:
        """``combine`` over ``fn(h, *args)`` for every handle."""
        ...


@runtime_checkable
class StatefulExecutor(Executor, Protocol):
    """An executor that can also keep per-shard results resident (see :meth:`map_persist`)."""

    def map_persist(self, fn: Callable[..., Any], handles: Sequence[Any], *args: Any
                    ) -> list[Any]:
        """Handles to ``fn(h, *args)`` for every handle, kept where they are computed."""
        ...


def payload_bytes(obj: Any) -> int:
    """Size of ``obj`` once pickled (what a message carrying it costs, roughly)."""
    return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _tree(values: list[Any], combine: Callable[[Any, Any], Any]) -> Any:
    while len(values) > 1:
        nxt = [combine(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


@dataclass
class SerialExecutor:
    """Runs every task here, in order; the same tree of ``combine`` calls as Dask."""

    def put(self, shards: Sequence[Any]) -> list[Any]:
        return list(shards)

    def map(self, fn: Callable[..., Any], handles: Sequence[Any], *args: Any) -> list[Any]:
        return [fn(h, *args) for h in handles]

    def map_persist(self, fn: Callable[..., Any], handles: Sequence[Any], *args: Any
                    ) -> list[Any]:
        return self.map(fn, handles, *args)

    def map_reduce(self, fn: Callable[..., Any], handles: Sequence[Any], *args: Any,
                   combine: Callable[[Any, Any], Any] = operator.add) -> Any:
        if not handles:
            raise ValueError("map_reduce needs at least one shard")
        return _tree(self.map(fn, handles, *args), combine)


def _identity(x: Any) -> Any:
    return x


@dataclass
class DaskExecutor:
    """``dask.distributed`` implementation of the seam.

    Parameters
    ----------
    client : distributed.Client
        A client of a ``LocalCluster``, of a cluster address or of a dask-jobqueue cluster.
    retries : int
        How often a task is retried when its worker dies.
    client_reduce_max : int
        Up to this many shards, :meth:`map_reduce` brings the per-shard results to the client
        and combines them there (one round trip); beyond, the tree of ``combine`` runs as tasks
        on the workers. Either way the tree is the same as :class:`SerialExecutor`'s, so the
        results are bit-identical for a fixed sharding.

    Attributes
    ----------
    bytes_sent : int
        Estimated bytes sent by :meth:`map_reduce` / :meth:`map` since the last :meth:`reset_bytes`
        (broadcast arguments once per task plus every per-task result that crosses to another
        worker or to the client).
    """

    client: Any
    retries: int = 3
    client_reduce_max: int = 64
    bytes_sent: int = field(default=0, init=False)

    def put(self, shards: Sequence[Any]) -> list[Any]:
        # a task (not client.scatter) creates each shard: the scheduler keeps the task and can
        # recompute the shard on another worker if its worker dies
        # and round-robin over the workers, so that every worker holds its share from the
        # start (later tasks follow their shard's data; none has to move a shard)
        workers = sorted(self.client.scheduler_info().get("workers", {}))
        futures = []
        for i, s in enumerate(shards):
            where = {"workers": [workers[i % len(workers)]], "allow_other_workers": True} \
                if workers else {}
            futures.append(self.client.submit(_identity, s, pure=False, retries=self.retries,
                                              **where))
        self.client.gather(futures)  # wait until resident, without keeping a copy here
        return futures

    def reset_bytes(self) -> None:
        self.bytes_sent = 0

    def _broadcast(self, args: tuple[Any, ...], n_tasks: int) -> list[Any]:
        out = []
        for a in args:
            self.bytes_sent += payload_bytes(a) * n_tasks
            out.append(a)
        return out

    def map(self, fn: Callable[..., Any], handles: Sequence[Any], *args: Any) -> list[Any]:
        bargs = self._broadcast(args, len(handles))
        futures = [self.client.submit(fn, h, *bargs, pure=False, retries=self.retries)
                   for h in handles]
        results = self.client.gather(futures)
        self.bytes_sent += sum(payload_bytes(r) for r in results)
        return results

    def map_persist(self, fn: Callable[..., Any], handles: Sequence[Any], *args: Any
                    ) -> list[Any]:
        # no gather: the new shards stay on the workers; a task that depends on them waits
        bargs = self._broadcast(args, len(handles))
        return [self.client.submit(fn, h, *bargs, pure=False, retries=self.retries)
                for h in handles]

    def map_reduce(self, fn: Callable[..., Any], handles: Sequence[Any], *args: Any,
                   combine: Callable[[Any, Any], Any] = operator.add) -> Any:
        if not handles:
            raise ValueError("map_reduce needs at least one shard")
        bargs = self._broadcast(args, len(handles))
        level = [self.client.submit(fn, h, *bargs, pure=False, retries=self.retries)
                 for h in handles]
        if len(level) <= self.client_reduce_max:
            # few shards: fetch the partial results and add them here, in the same tree as
            # SerialExecutor (combine tasks on the workers would cost a scheduler round trip per
            # level for a few small additions)
            results = self.client.gather(level)
            self.bytes_sent += sum(payload_bytes(r) for r in results)
            return _tree(results, combine)
        while len(level) > 1:
            nxt = [self.client.submit(combine, level[i], level[i + 1], pure=False,
                                      retries=self.retries)
                   for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        result = level[0].result()
        # each combine moves at most one partial result between workers, plus the final one
        self.bytes_sent += payload_bytes(result) * len(handles)
        return result


def as_executor(executor: Any = None, client: Any = None) -> Executor:
    """Normalise ``executor=`` / ``client=`` arguments of the fitting functions."""
    if executor is not None and client is not None:
        raise ValueError("give either executor= or client=, not both")
    if client is not None:
        return DaskExecutor(client)
    if executor is None:
        return SerialExecutor()
    if isinstance(executor, Executor):
        return executor
    raise TypeError(f"executor must implement put/map/map_reduce, got {executor!r}")
