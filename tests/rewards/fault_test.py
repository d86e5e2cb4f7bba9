"""Fault injection in the reward path, driven through the jitted `io_callback`.

A verifier that hangs past the deadline, kills its worker mid-batch or raises, and a
worker killed from outside: the iteration completes, the affected rows get the failure
row (zeros), the others score normally, and the failures are counted and logged. An
exception in the host callback outside the worker pool: the jitted call fails at once
(also on 8 devices, where a callback failing on one device used to leave the others
waiting in a collective), `raise_if_failed` raises the clear `RewardError`, and later
calls work. The misbehaving verifier is `r1jax.rewards._testing.FaultyVerifier` (spawned
workers import it by reference).
"""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax._testing import xla_env
from r1jax.errors import RewardError
from r1jax.rewards import SCORE_FIELDS, RewardConfig, TaskScorer
from r1jax.rewards._testing import FaultyVerifier
from r1jax.rewards.bridge import HostReward
from r1jax.tasks import ArithmeticTask, Problem
from r1jax.tokenizer import CharTokenizer
from r1jax.train.reductions import Axis
from r1jax.train.reward_callback import host_rewards

TOK = CharTokenizer()
T = 48
F = len(SCORE_FIELDS)
COL = {k: i for i, k in enumerate(SCORE_FIELDS)}
DEADLINE_S = 1.5  # generous: the machine running the tests may be busy
GOOD = "3+4=7\n7*2=14\n#### 14"
BAD = "3+4=7\n7*2=15\n#### 15"


class FaultyTask(ArithmeticTask):
    def __init__(self):
        super().__init__()
        self.verifier = FaultyVerifier()


def _jitted(h):
    """The RL iteration's reward crossing, jitted: (scores, token_rewards)."""
    return jax.jit(lambda tokens, ref, step: host_rewards(h, F, tokens, ref, step, Axis(None)))


def _run(h, fn, completions, step):
    """Registers one problem per pair of completions under `step`, runs `fn`."""
    tokens, _ = TOK.encode_right_padded(completions, T)
    prompts = [f"q{i // 2}" for i in range(len(completions))]
    problems = [Problem(q, "14", "", 1, 1) for q in prompts]
    ref = h.register(step, problems, prompts)
    scores, rewards = fn(jnp.asarray(tokens), jnp.asarray(ref), jnp.int32(step))
    return np.asarray(scores), np.asarray(rewards)


@pytest.fixture(scope="module")
def workers():
    """A task scorer with two started reward workers and the fault-injecting verifier."""
    with TaskScorer(FaultyTask(), RewardConfig(), num_workers=2, deadline_s=DEADLINE_S) as s:
        s.pool.start()
        yield s


@pytest.fixture
def warnings_log():
    """Records of the bridge's logger (not through the root: the CLI may stop the
    "r1jax" logger from propagating)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("r1jax.rewards.bridge")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _check_rows(scores, rewards, failed_rows):
    for i in range(len(scores)):
        if i in failed_rows:  # the failure row: zeros, no reward anywhere
            assert not scores[i].any() and not rewards[i].any(), i
        else:
            assert scores[i, COL["answer_correct"]] == 1 and scores[i, COL["total"]] > 0, i
            np.testing.assert_allclose(rewards[i].sum(), scores[i, COL["total"]], rtol=1e-5)


@pytest.mark.parametrize(
    "marker, kind, restarts",
    [("HANG", "timeouts", 1), ("CRASH", "errors", 1), ("RAISE", "errors", 0)],
)
def test_failing_items_score_as_failures_counted_and_logged(
    workers, warnings_log, marker, kind, restarts
):
    h = HostReward(workers, TOK, group_size=2)
    before = dict(workers.pool.stats)
    completions = [GOOD, f"{marker}\n{GOOD}", GOOD, GOOD, f"{marker}\n{GOOD}", GOOD]
    t0 = time.monotonic()
    scores, rewards = _run(h, _jitted(h), completions, step=7)
    assert time.monotonic() - t0 < 10 * DEADLINE_S  # returned: no hang
    _check_rows(scores, rewards, failed_rows={1, 4})
    delta = {k: workers.pool.stats[k] - before[k] for k in before}
    other = "errors" if kind == "timeouts" else "timeouts"
    assert delta[kind] == 2 and delta[other] == 0 and delta["restarts"] == 2 * restarts
    assert h.failures == 2 and getattr(h, kind) == 2 and getattr(h, other) == 0
    assert h.error is None
    h.raise_if_failed()  # nothing stored: per-item failures do not stop the run
    t, e = (2, 0) if kind == "timeouts" else (0, 2)
    lines = [r.getMessage() for r in warnings_log]
    assert lines == [
        (
            f"host reward, global step 7: 2 of 6 items failed ({t} timeouts, {e} errors): "
            "scored as failures (rows 1, 4)"
        )
    ]
    # The pool recovered: the next iteration scores every row.
    scores, _ = _run(h, _jitted(h), [GOOD, BAD], step=8)
    assert scores[0, COL["total"]] > 0 and scores[1, COL["answer_correct"]] == 0
    assert h.failures == 2 and len(warnings_log) == 1


def test_worker_killed_from_outside_mid_batch_is_replaced(workers, warnings_log):
    h = HostReward(workers, TOK, group_size=2)
    fn = _jitted(h)
    _run(h, fn, [f"SLOW\n{GOOD}"] * 6, step=2)  # compiled: the kill lands mid-batch
    before = dict(workers.pool.stats)
    victim = workers.pool.worker_pids[0]
    # Each worker scores 3 items of SLOW_S = 0.4 s in turn: the kill hits its first.
    killer = threading.Timer(0.2, os.kill, (victim, signal.SIGKILL))
    killer.start()
    try:
        scores, rewards = _run(h, fn, [f"SLOW\n{GOOD}"] * 6, step=3)
    finally:
        killer.cancel()
    failed = {i for i in range(6) if not scores[i].any()}
    assert len(failed) == 1  # the item the killed worker was on
    _check_rows(scores, rewards, failed)
    assert workers.pool.stats["errors"] - before["errors"] == 1
    assert workers.pool.stats["restarts"] - before["restarts"] == 1
    assert victim not in workers.pool.worker_pids and len(workers.pool.worker_pids) == 2
    assert h.failures == h.errors == 1 and h.restarts == 1
    assert [r.getMessage() for r in warnings_log] == [
        (
            "host reward, global step 3: 1 of 6 items failed (0 timeouts, 1 errors): "
            f"scored as failures (rows {failed.pop()})"
        )
    ]


def _break_lookup(h):
    return "KeyError", None  # the batch is not registered (see the test)


def _break_novelty(h):
    def boom(*a, **k):
        raise ZeroDivisionError("novelty bug")

    h.novelty.score_group = boom
    return "ZeroDivisionError", "novelty bug"


def _break_decode(h):
    class Broken(CharTokenizer):
        def decode_with_offsets(self, ids):
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "decode bug")

    h.tokenizer = Broken()
    return "UnicodeDecodeError", "decode bug"


@pytest.mark.parametrize("brk", [_break_lookup, _break_novelty, _break_decode])
def test_exception_in_the_callback_fails_the_jitted_call_with_a_clear_error(brk):
    h = HostReward(TaskScorer(ArithmeticTask(), RewardConfig()), TOK, group_size=2)
    fn = _jitted(h)
    scores, _ = _run(h, fn, [GOOD, BAD], step=4)  # compiled, working
    assert scores[0, COL["total"]] > 0
    good_tokenizer = h.tokenizer
    cause, text = brk(h)
    tokens, _ = TOK.encode_right_padded([GOOD, BAD], T)
    ref = np.array([[5, 0], [5, 1]], np.int32)
    if brk is not _break_lookup:
        ref = h.register(5, [Problem("q", "14", "", 1, 1)] * 2, ["q", "q"])
    t0 = time.monotonic()
    with pytest.raises(jax.errors.JaxRuntimeError) as xla:
        jax.block_until_ready(fn(jnp.asarray(tokens), jnp.asarray(ref), jnp.int32(5)))
    assert time.monotonic() - t0 < 10
    assert f"RewardError: host reward failed at global step 5: {cause}" in str(xla.value)
    with pytest.raises(RewardError, match=f"^host reward failed at global step 5: {cause}") as e:
        h.raise_if_failed()
    assert type(e.value.__cause__).__name__ == cause and cause in e.value.traceback
    if text:
        assert text in str(e.value)
    assert h.error is None
    h.raise_if_failed()  # cleared: returns
    # Not hung, not poisoned: the next iteration runs once the fault is gone.
    h.tokenizer = good_tokenizer
    h.novelty = type(h.novelty)()
    scores, _ = _run(h, fn, [GOOD, BAD], step=6)
    assert scores[0, COL["total"]] > 0 and h.failures == 0


MULTI_DEVICE = textwrap.dedent("""
    import json, sys, time
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from r1jax import parallel
    from r1jax.rewards import SCORE_FIELDS, RewardConfig, TaskScorer
    from r1jax.rewards.bridge import HostReward
    from r1jax.tasks import ArithmeticTask, Problem
    from r1jax.tokenizer import CharTokenizer
    from r1jax.train.reductions import Axis
    from r1jax.train.reward_callback import host_rewards

    F, T, TOK = len(SCORE_FIELDS), 32, CharTokenizer()
    scorer = TaskScorer(ArithmeticTask(), RewardConfig(w_novelty=0.0))
    h = HostReward(scorer, TOK, group_size=2)
    tokens, _ = TOK.encode_right_padded(["3+4=7\\n7*2=14\\n#### 14"] * 16, T)
    mesh = parallel.make_mesh(2, 2, 2)
    sh = NamedSharding(mesh, P(("data", "fsdp")))

    def ref(key):
        return h.register(key, [Problem("q", "14", "", 1, 1)] * 16, ["q"] * 16)

    def total(out):
        return float(np.asarray(out[0])[..., 0].sum())

    modes = {
        "global": jax.jit(lambda t, r, s: host_rewards(h, F, t, r, s, Axis(None))),
        "per_shard": jax.jit(lambda t, r, s: host_rewards(h, F, t, r, s, Axis(None), mesh)),
    }
    pmapped = jax.pmap(
        lambda t, r, s: host_rewards(h, F, t, r, s, Axis("data")),
        axis_name="data",
        in_axes=(0, 0, None),
    )
    result = {}
    for name in ("global", "per_shard", "pmap"):
        def call(key, r):
            if name == "pmap":
                return pmapped(tokens.reshape(8, 2, T), r.reshape(8, 2, 2), jnp.int32(key))
            t_, r_ = jax.device_put(tokens, sh), jax.device_put(r, sh)
            return modes[name](t_, r_, jnp.int32(key))
        ok = total(call(1, ref(1)))
        bad = np.array([[99, 0]] * 16, np.int32)  # never registered: KeyError
        t0 = time.monotonic()
        try:
            jax.block_until_ready(call(2, bad))
            raised = None
        except Exception as e:
            raised = type(e).__name__
        took = time.monotonic() - t0
        try:
            h.raise_if_failed()
            message = None
        except Exception as e:
            message = str(e)
        after = total(call(3, ref(3)))
        result[name] = dict(ok=ok, raised=raised, took=took, message=message, after=after)
    print(json.dumps(result))
""")


def test_callback_exception_fails_every_device_at_once(tmp_path):
    """On 8 devices a callback that raised on one device left the others in a collective
    (XLA's CPU runtime aborts after 40 s; NCCL may wait forever); now all fail at once."""
    script = tmp_path / "multi_device.py"
    script.write_text(MULTI_DEVICE)
    env = xla_env(devices=8)
    r = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for name, got in res.items():
        assert got["raised"] == "JaxRuntimeError", (name, got)
        assert got["took"] < 10, (name, got)
        assert got["message"].startswith("host reward failed at global step 2: KeyError"), got
        assert got["ok"] == got["after"] > 0, (name, got)
