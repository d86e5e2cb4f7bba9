"""Tests for r1jax.rewards.host.RewardPool: order, deadlines, errors, cleanup.

Misbehaving score functions live in ``r1jax.rewards._testing`` so that spawned workers
can import them.
"""

import functools
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from r1jax.rewards import SCORE_FIELDS, RewardConfig, RewardPool, _testing, score_vector
from r1jax.rewards._testing import CRASH, HANG, RAISE, sleep_score, toy_score

DEADLINE_S = 1.0  # generous: the machine running the tests may be busy


def _solutions(n):
    out = []
    for i in range(n):
        a, b = 3 + i % 7, 2 + i % 5
        steps = f"{a}*{b}={a * b}\n{a * b}+{i}={a * b + i + (i % 3 == 0)}"
        answer = a * b + i if i % 4 else a * b + i + 1
        out.append((f"{steps}\n#### {answer}", str(a * b + i)))
    return out


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as alive (it was not reaped).
    return True


def _running(pid):
    """True while ``pid`` exists and is not a zombie (orphans are reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def toy_pool():
    with RewardPool(toy_score, num_workers=2, deadline_s=DEADLINE_S, num_fields=2) as pool:
        pool.start()
        yield pool


def test_parallel_equals_inline_in_order():
    items = _solutions(97)
    fn = functools.partial(score_vector, cfg=RewardConfig(efficiency_mode="time_decay"))
    with RewardPool(fn, num_workers=0) as inline:
        want = inline.score_batch(items)
    with RewardPool(fn, num_workers=2) as pool:
        got = pool.score_batch(items)
        again = pool.score_batch(items[::-1])
    assert want.shape == (97, len(SCORE_FIELDS)) and want.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(again, want[::-1])
    assert want[:, SCORE_FIELDS.index("answer_correct")].sum() > 0
    direct = np.asarray([fn(*item) for item in items], np.float32)
    np.testing.assert_array_equal(want, direct)


def test_items_run_in_parallel():
    with RewardPool(sleep_score, num_workers=2, chunk_size=1).start() as pool:
        start = time.perf_counter()
        out = pool.score_batch([(1.0, float(i)) for i in range(4)])
        elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(out[:, 0], [0, 1, 2, 3])
    assert elapsed < 3.5, elapsed  # serial would take 4 s; 2 workers about 2 s


def test_hanging_item_is_killed_at_deadline(toy_pool):
    before = dict(toy_pool.stats)
    items = [("a", "a"), ("bb", "x"), (HANG, ""), ("ccc", "ccc"), ("dddd", "")]
    start = time.perf_counter()
    out = toy_pool.score_batch(items)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(out, [[1, 1], [2, 0], [0, 0], [3, 1], [4, 0]])
    assert DEADLINE_S <= elapsed < DEADLINE_S + 5.0
    assert toy_pool.stats["timeouts"] == before["timeouts"] + 1
    assert toy_pool.stats["restarts"] == before["restarts"] + 1
    assert toy_pool.stats["errors"] == before["errors"]
    # The pool keeps working after the kill.
    np.testing.assert_array_equal(toy_pool.score_batch([("xy", "xy")] * 3), [[2, 1]] * 3)


def test_deadline_is_per_item_inside_a_chunk():
    # One chunk of 6 items: the hang is in the middle; items before it (whose results
    # die with the worker) and after it are rescored elsewhere.
    items = [("a", "a"), ("b", ""), (HANG, ""), ("dd", "dd"), ("e", ""), ("ff", "")]
    with RewardPool(toy_score, num_workers=2, deadline_s=DEADLINE_S, chunk_size=6) as pool:
        out = pool.score_batch(items)
        assert pool.stats["timeouts"] == 1
    np.testing.assert_array_equal(out, [[1, 1], [1, 0], [0, 0], [2, 1], [1, 0], [2, 0]])
    # A chunk of slow items each under the deadline is not killed, though the chunk
    # as a whole takes longer than the deadline.
    with RewardPool(sleep_score, num_workers=1, deadline_s=0.8, chunk_size=4) as pool:
        out = pool.score_batch([(0.3, float(i)) for i in range(4)])
        assert pool.stats["timeouts"] == 0
    np.testing.assert_array_equal(out[:, 0], [0, 1, 2, 3])


def test_raising_and_crashing_items_are_errors(toy_pool):
    before = dict(toy_pool.stats)
    out = toy_pool.score_batch([(RAISE, ""), ("ok", "ok"), (CRASH, ""), ("k", "")])
    np.testing.assert_array_equal(out, [[0, 0], [2, 1], [0, 0], [1, 0]])
    assert toy_pool.stats["errors"] == before["errors"] + 2
    assert toy_pool.stats["timeouts"] == before["timeouts"]
    assert toy_pool.stats["restarts"] == before["restarts"] + 1  # only the crash


def test_timeout_value():
    with RewardPool(
        toy_score, num_workers=1, deadline_s=DEADLINE_S, timeout_value=(-1.0, -2.0)
    ) as pool:
        out = pool.score_batch([(HANG, ""), (RAISE, ""), ("a", "a")])
    np.testing.assert_array_equal(out, [[-1, -2], [-1, -2], [1, 1]])


def test_inline_mode_counts_errors():
    with RewardPool(toy_score, num_workers=0) as pool:
        out = pool.score_batch([("ab", "ab"), (RAISE, "")])
        assert pool.worker_pids == []
        assert pool.stats["errors"] == 1
    np.testing.assert_array_equal(out, [[2, 1], [0, 0]])


def test_all_items_failing_needs_known_width():
    with RewardPool(toy_score, num_workers=0) as pool:
        with pytest.raises(RuntimeError, match="num_fields"):
            pool.score_batch([(RAISE, "")])
    with RewardPool(toy_score, num_workers=0, num_fields=2) as pool:
        np.testing.assert_array_equal(pool.score_batch([(RAISE, "")]), [[0, 0]])
        assert pool.score_batch([]).shape == (0, 2)


def test_no_leftover_processes_after_close():
    pool = RewardPool(toy_score, num_workers=2, deadline_s=DEADLINE_S)
    pool.score_batch([("a", ""), (HANG, "")])  # also replaces one worker
    pids = pool.worker_pids
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    pool.close()
    pool.close()  # idempotent
    assert not any(_alive(p) for p in pids)
    ours = [p for p in multiprocessing.active_children() if p.name.startswith("r1jax-reward")]
    assert not [p for p in ours if p.pid in pids]
    with pytest.raises(RuntimeError, match="closed"):
        pool.score_batch([("a", "")])


def test_argument_validation():
    with pytest.raises(TypeError, match="module-level"):
        RewardPool(lambda x: (1.0,), num_workers=1)
    with pytest.raises(ValueError, match="num_workers"):
        RewardPool(toy_score, num_workers=-1)
    with pytest.raises(ValueError, match="deadline_s"):
        RewardPool(toy_score, deadline_s=0)
    with pytest.raises(ValueError, match="chunk_size"):
        RewardPool(toy_score, chunk_size=0)
    with pytest.raises(ValueError, match="num_fields"):
        RewardPool(toy_score, timeout_value=(0.0,), num_fields=2)
    assert _testing.toy_score("abc", "abc") == (3.0, 1.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_the_parent_is_killed():
    script = textwrap.dedent(f"""
        import os, signal, threading, time
        from r1jax.rewards import RewardPool
        from r1jax.rewards._testing import toy_score
        pool = RewardPool(toy_score, num_workers=2, deadline_s=60).start()
        print(*pool.worker_pids, flush=True)
        threading.Thread(target=pool.score_batch, args=([({HANG!r}, "")] * 2,)).start()
        time.sleep(0.5)  # both workers now hang
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=20
    )
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2, proc.stderr
    deadline = time.monotonic() + 10
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(p) for p in pids)


def test_interrupted_batch_leaves_no_stale_work(monkeypatch):
    with RewardPool(toy_score, num_workers=2, deadline_s=DEADLINE_S, chunk_size=1) as pool:
        pool.start()
        real_pump = RewardPool._pump
        calls = []

        def interrupted_pump(self, rows, queue):
            calls.append(1)
            if len(calls) == 1:
                raise KeyboardInterrupt
            return real_pump(self, rows, queue)

        monkeypatch.setattr(RewardPool, "_pump", interrupted_pump)
        with pytest.raises(KeyboardInterrupt):
            pool.score_batch([("a", "a"), ("bb", "bb")])
        assert pool.worker_pids == []  # workers dropped; restarted on the next call
        out = pool.score_batch([("xyz", ""), ("q", "q")])
    np.testing.assert_array_equal(out, [[3, 0], [1, 1]])
