"""The host side of the reward bridge: a process pool with a hard per-item deadline.

The jitted RL step hands completions to the host through ``io_callback``; they are
scored here. Scoring model output must never stall or crash training, so each item runs
in a worker process under a hard deadline: a worker that does not answer within
``deadline_s`` is killed (SIGTERM, then SIGKILL) and replaced, and its item gets the
fallback row (``timeout_value``, default zeros), as does an item whose ``score_fn``
raises or crashes. ``pool.stats`` counts items, batches, timeouts, errors and restarts;
``pool.last_batch`` holds those counts (and the failed items) of the calling thread's
last ``score_batch``, so a caller can report each batch's failures.

Design:
  * Workers come from the ``spawn`` context (JAX in the parent is not fork-safe), start
    lazily and are kept. Each reports ready after importing ``score_fn`` and gets no
    work before, so slow imports never eat an item's deadline. ``score_fn`` must pickle
    by reference: a module-level function or a ``functools.partial`` of one (e.g.
    ``composite.score_vector`` with a ``RewardConfig``). Spawned workers import the
    parent's ``__main__`` (a ``multiprocessing`` rule): guard scripts with
    ``if __name__ == "__main__":`` and keep what they import at top level light.
  * Each worker has its own ``Pipe``; the parent sends a *chunk* of items to each idle
    worker, waits on all pipes at once (``multiprocessing.connection.wait``) and gets
    one reply per chunk (a message per item costs more than scoring a typical item).
    The deadline stays per item: before each item the worker stamps its position and
    ``time.monotonic()`` in a shared 64-bit word, which the parent reads at the nearest
    deadline. On a kill the stuck item fails and the rest of its chunk is requeued.
  * Results are placed by input index: deterministic and in input order whatever the
    scheduling. ``score_batch`` holds a lock, so threads may share a pool.
  * ``num_workers=0`` scores inline (tests, debugging, profiling): no processes and no
    deadline, a hanging item hangs the caller; exceptions still give the fallback.
  * ``close()`` (also on ``with`` exit, garbage collection and, via ``atexit``,
    interpreter exit) stops, terminates and joins the workers: no zombies. A worker
    whose parent died exits by itself, even while an item hangs.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
import weakref
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["RewardPool"]

_log = logging.getLogger(__name__)
_MAX_ERROR_CHARS = 300  # error text kept from a raising score_fn
_MAX_LOGGED = 10  # failures logged per pool (all are counted in stats)
_AUTO_CHUNK_MAX = 32  # largest chunk the automatic chunk size picks


# A worker publishes which item it is on, and since when, in one shared 64-bit word
# (a single aligned store, so the parent never reads half an update):
# chunk sequence number (12 bits) | position in chunk (12 bits) | ms since pool epoch (40).
_SEQ_BITS, _POS_BITS, _MS_BITS = 12, 12, 40
_SEQ_MASK, _POS_MASK, _MS_MASK = (1 << _SEQ_BITS) - 1, (1 << _POS_BITS) - 1, (1 << _MS_BITS) - 1
MAX_CHUNK = _POS_MASK  # largest chunk_size the progress word can index


def _score_one(score_fn: Callable[..., Sequence[float]], index: int, item: tuple):
    """``(index, True, floats)`` from ``score_fn(*item)``, or ``(index, False, error)``."""
    try:
        return index, True, tuple(float(x) for x in score_fn(*item))
    except Exception as e:  # noqa: BLE001  (any failure of untrusted scoring)
        return index, False, f"{type(e).__name__}: {e}"[:_MAX_ERROR_CHARS]


def _exit_when_orphaned(parent_pid: int) -> None:
    """Ends the worker when its parent dies, even while an item hangs."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(0)


def _worker_main(conn, score_fn, progress, epoch: float, parent_pid: int) -> None:
    """Worker loop: receive ``(seq, [(index, item), ...])``, reply ``(seq, results)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # parent went away
        if msg is None:
            return
        seq, chunk = msg
        stamp = (seq & _SEQ_MASK) << (_POS_BITS + _MS_BITS)
        results = []
        for pos, (index, item) in enumerate(chunk):
            ms = int((time.monotonic() - epoch) * 1000.0) & _MS_MASK
            progress.value = stamp | (pos << _MS_BITS) | ms
            results.append(_score_one(score_fn, index, item))
        conn.send((seq, results))


class _Worker:
    """Parent-side handle of one worker process."""

    def __init__(self, ctx, score_fn, slot: int, epoch: float):
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.progress = ctx.RawValue("Q", 0)
        args = (child_conn, score_fn, self.progress, epoch, os.getpid())
        self.proc = ctx.Process(
            target=_worker_main, args=args, name=f"r1jax-reward-{slot}", daemon=True
        )
        self.proc.start()
        child_conn.close()  # so the parent sees EOF when the child dies
        self.epoch, self.started_at, self.ready = epoch, time.monotonic(), False
        self.seq = 0  # sequence number of the last chunk sent
        self.chunk: list[int] = []  # item indices in flight (empty: idle)
        self.dispatched_at = 0.0

    def running(self) -> tuple[int, float]:
        """(position in ``chunk`` of the item being scored, when it started)."""
        word = self.progress.value
        if word >> (_POS_BITS + _MS_BITS) == self.seq & _SEQ_MASK:
            pos = (word >> _MS_BITS) & _POS_MASK
            start = self.epoch + (word & _MS_MASK) / 1000.0
            return pos, max(start, self.dispatched_at)
        return 0, self.dispatched_at  # the chunk is not started yet

    def stop(self, graceful: bool) -> None:
        """Asks (if ``graceful``), then SIGTERMs, then SIGKILLs; always reaps."""
        if graceful:
            try:
                self.conn.send(None)
                self.proc.join(0.5)
            except (OSError, ValueError):
                pass
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(0.5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()
        self.proc.close()


def _close_ref(ref: "weakref.ref[RewardPool]") -> None:
    if (pool := ref()) is not None:
        pool.close()


class RewardPool:
    """Scores batches of items in worker processes with a hard per-item deadline.

    Args:
      score_fn: ``score_fn(*item) -> tuple of F floats``; picklable by reference.
      num_workers: worker processes; 0 scores inline (no deadline, see module doc).
      deadline_s: seconds one item may take before its worker is killed.
      timeout_value: the row (F floats) for an item that timed out or failed; zeros.
      num_fields: F, else taken from ``timeout_value`` or the first result. Pass it in
        production so a batch in which every item fails still has a known width.
      chunk_size: items per message to a worker; None picks, per batch of N items,
        ``clip(ceil(N / (4 * num_workers)), 1, 32)``: about four chunks per worker
        balance the load, and 16-32 items a message amortise the IPC (see
        ``benchmarks/reward_pool_bench.py``). At most ``MAX_CHUNK``.
      start_timeout_s: seconds a fresh worker may take to import ``score_fn``.
    """

    def __init__(
        self,
        score_fn: Callable[..., Sequence[float]],
        num_workers: int = 2,
        deadline_s: float = 2.0,
        timeout_value: Sequence[float] | None = None,
        *,
        num_fields: int | None = None,
        chunk_size: int | None = None,
        start_timeout_s: float = 120.0,
    ):
        if num_workers < 0:
            raise ValueError(f"num_workers={num_workers}: must be >= 0 (0 = inline).")
        if not deadline_s > 0:
            raise ValueError(f"deadline_s={deadline_s}: must be > 0 seconds.")
        if chunk_size is not None and not 1 <= chunk_size <= MAX_CHUNK:
            raise ValueError(f"chunk_size={chunk_size}: must be in [1, {MAX_CHUNK}] or None.")
        if timeout_value is not None:
            timeout_value = np.asarray(timeout_value, np.float32).reshape(-1)
            if num_fields is not None and num_fields != timeout_value.size:
                raise ValueError(
                    f"timeout_value has {timeout_value.size} fields but num_fields="
                    f"{num_fields}; make them agree or drop num_fields."
                )
            num_fields = timeout_value.size
        if num_workers > 0:
            try:
                pickle.dumps(score_fn)
            except Exception as e:
                raise TypeError(
                    f"score_fn {score_fn!r} cannot be sent to worker processes ({e}); "
                    "use a module-level function or a functools.partial of one."
                ) from e
        self.score_fn = score_fn
        self.num_workers = num_workers
        self.deadline_s = float(deadline_s)
        self.chunk_size = chunk_size
        self.start_timeout_s = float(start_timeout_s)
        self._timeout_value = timeout_value
        self._num_fields = num_fields
        self._ctx = multiprocessing.get_context("spawn")
        self._epoch = time.monotonic()  # workers stamp progress in ms since this
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self.stats = {"items": 0, "batches": 0, "timeouts": 0, "errors": 0, "restarts": 0}
        self._batch_failed: list[tuple[int, str]] = []  # (index, kind) of this batch
        self._batch_detail: dict[int, str] = {}  # index -> what went wrong
        self._last = threading.local()  # per calling thread: its last batch (last_batch)
        self._atexit_fn = functools.partial(_close_ref, weakref.ref(self))
        atexit.register(self._atexit_fn)

    def start(self) -> "RewardPool":
        """Starts the workers (if not yet) and waits until all are ready."""
        with self._lock:
            self._ensure_started()
            while not all(w.ready for w in self._workers):
                self._pump({}, collections.deque())
        return self

    def _ensure_started(self) -> None:
        if self._closed:
            raise RuntimeError("RewardPool is closed.")
        if not self._workers and self.num_workers > 0:
            self._workers = [self._new_worker(i) for i in range(self.num_workers)]

    def _new_worker(self, slot: int) -> _Worker:
        return _Worker(self._ctx, self.score_fn, slot, self._epoch)

    def _replace(self, slot: int) -> None:
        self._workers[slot].stop(graceful=False)
        self._workers[slot] = self._new_worker(slot)
        self.stats["restarts"] += 1

    def close(self) -> None:
        """Stops all workers and reaps them; idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit_fn)
        self._stop_all(graceful=True)

    def _stop_all(self, graceful: bool) -> None:
        for w in self._workers:
            w.stop(graceful)
        self._workers = []  # restarted lazily unless closed

    def __enter__(self) -> "RewardPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):  # half-built pool, interpreter shutdown
            self.close()

    @property
    def worker_pids(self) -> list[int]:
        """PIDs of the live worker processes (for tests and monitoring)."""
        return [w.proc.pid for w in self._workers]

    @property
    def last_batch(self) -> dict | None:
        """The calling thread's last ``score_batch``: ``{"items", "timeouts", "errors",
        "restarts", "failed", "detail"}`` (``failed``: the ``(index, kind)`` of each item that
        got the fallback row, kind "timeouts" or "errors"; ``detail``: index -> what went
        wrong, e.g. the exception); None before its first batch. Other
        threads sharing the pool do not change it."""
        return getattr(self._last, "batch", None)

    def score_batch(self, items: Sequence[tuple]) -> np.ndarray:
        """Scores ``score_fn(*item)`` for every item; returns float32 ``[N, F]`` in order."""
        with self._lock:
            self._ensure_started()
            before = dict(self.stats)
            self._batch_failed, self._batch_detail = [], {}
            rows: dict[int, np.ndarray] = {}  # index -> scores; missing rows fall back
            if self.num_workers == 0:
                for i, item in enumerate(items):
                    self._accept(rows, *_score_one(self.score_fn, i, item))
            else:
                queue = collections.deque(range(len(items)))
                k = self.chunk_size or min(
                    _AUTO_CHUNK_MAX, max(1, -(-len(items) // (4 * self.num_workers)))
                )
                try:
                    while queue or any(w.chunk for w in self._workers):
                        self._dispatch(items, queue, k)
                        self._pump(rows, queue)
                except BaseException:  # e.g. KeyboardInterrupt: no stale chunks survive
                    self._stop_all(graceful=False)
                    raise
            self.stats["items"] += len(items)
            self.stats["batches"] += 1
            batch = {k: self.stats[k] - before[k] for k in ("items", "timeouts", "errors")}
            batch["restarts"] = self.stats["restarts"] - before["restarts"]
            batch["failed"] = sorted(self._batch_failed)
            batch["detail"] = dict(self._batch_detail)
            self._last.batch = batch
            return self._assemble(len(items), rows)

    def _failure(self, kind: str, index: int, detail: str) -> None:
        self.stats[kind] += 1
        self._batch_failed.append((index, kind))
        self._batch_detail.setdefault(index, detail)
        if self.stats["timeouts"] + self.stats["errors"] <= _MAX_LOGGED:
            _log.warning("RewardPool: item %d of the batch: %s (%s).", index, kind, detail)

    def _accept(self, rows, index: int, ok: bool, payload: Any) -> None:
        if ok:
            row = np.asarray(payload, np.float32).reshape(-1)
            if self._num_fields is None:
                self._num_fields = row.size
            if row.size == self._num_fields:
                rows[index] = row
                return
            payload = f"{row.size} fields, expected {self._num_fields}"
        self._failure("errors", index, str(payload))

    def _assemble(self, n: int, rows) -> np.ndarray:
        if self._num_fields is None:
            if n == 0:
                return np.zeros((0, 0), np.float32)
            raise RuntimeError(
                "RewardPool: every item failed and the number of fields is unknown; pass "
                "num_fields= or timeout_value= to RewardPool."
            )
        out = np.zeros((n, self._num_fields), np.float32)  # default fallback: zeros
        if self._timeout_value is not None:
            out[:] = self._timeout_value
        for i, row in rows.items():
            out[i] = row
        return out

    def _dispatch(self, items, queue, k: int) -> None:
        for slot, w in enumerate(self._workers):
            if not queue:
                return
            if not w.ready or w.chunk:
                continue
            chunk = [queue.popleft() for _ in range(min(k, len(queue)))]  # k items
            w.seq += 1
            try:
                w.conn.send((w.seq, [(i, items[i]) for i in chunk]))
            except (OSError, ValueError):  # died while idle: requeue, replace
                queue.extendleft(reversed(chunk))
                self._replace(slot)
                continue
            w.chunk = chunk
            w.dispatched_at = time.monotonic()

    def _pump(self, rows, queue) -> None:
        """Waits for replies or the nearest deadline; handles replies, kills, crashes."""
        horizons = []
        for w in self._workers:
            if not w.ready:
                horizons.append(w.started_at + self.start_timeout_s)
            elif w.chunk:
                horizons.append(w.running()[1] + self.deadline_s)
        if not horizons:
            return
        timeout = max(0.0, min(horizons) - time.monotonic())  # nearest deadline
        waits = [w.conn for w in self._workers if w.chunk or not w.ready]
        for conn in multiprocessing.connection.wait(waits, timeout):
            slot = next(i for i, w in enumerate(self._workers) if w.conn is conn)
            self._receive(slot, rows, queue)
        now = time.monotonic()
        for slot, w in enumerate(self._workers):
            if not w.ready and now - w.started_at > self.start_timeout_s:
                raise RuntimeError(
                    f"RewardPool worker {slot} not ready after {self.start_timeout_s} s."
                )
            if w.chunk and now - w.running()[1] > self.deadline_s:
                self._fail_current(slot, queue, "timeouts", f"over {self.deadline_s} s")

    def _fail_current(self, slot: int, queue, kind: str, detail: str) -> None:
        """The item being scored in ``slot`` fails; the rest of its chunk is requeued
        (results already computed in the dead worker are lost and recomputed)."""
        w = self._workers[slot]
        pos, _ = w.running()  # w.chunk[pos] gets the fallback row
        self._failure(kind, w.chunk[pos], detail)
        queue.extendleft(reversed(w.chunk[:pos] + w.chunk[pos + 1 :]))
        w.chunk = []
        self._replace(slot)

    def _receive(self, slot: int, rows, queue) -> None:
        w = self._workers[slot]
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            if not w.ready:
                w.proc.join(1.0)
                raise RuntimeError(
                    f"RewardPool worker {slot} died while starting (exit code "
                    f"{w.proc.exitcode}); is score_fn importable in a fresh process?"
                ) from None
            if w.chunk:  # crashed mid-item (os._exit, segfault, OOM kill)
                self._fail_current(slot, queue, "errors", "worker died")
            else:
                self._replace(slot)
            return
        if msg[0] == "ready":
            w.ready = True
            return
        seq, results = msg
        if seq != w.seq:  # pragma: no cover  (cannot happen; be safe)
            return
        for index, ok, payload in results:
            self._accept(rows, index, ok, payload)
        w.chunk = []
