"""The host side of the RL iteration's reward: from sampled tokens to token rewards.

``HostReward`` is the callable the RL iteration calls on the host: between its rollout
and learner programs (``train.split_rl``, the default), or from inside one program with
``io_callback`` (``train.reward_callback``). For a
batch of ``N = B·G`` completions (the ``G`` samples of one prompt are adjacent) it:

1. decodes the completions (with the token that wrote each character) and looks up
   their problems' references (answer and subgoals, kept on the host: ``register``);
2. optionally rewrites each completion's surface form (``noise.RewardNoise.perturb``:
   spacing, thousands separators, ``.0``; verdict-preserving), so the policy cannot
   lean on one surface form the verifier happens to favour;
3. scores the completions with the task's verifier in the worker pool
   (``scoring.TaskScorer``: correctness, efficiency, format, subgoal; hard deadline);
4. adds novelty in this process: the ``novelty.NoveltyTracker`` keeps, per prompt, a
   tree of the step paths of the correct solutions found so far, inserts each group
   and scores every member leave-one-out (against the history and the rest of its
   group); ``total += w_novelty * novelty``. A path
   holds only the steps that make progress (``novelty.progress_steps``), so idle
   equations added to a common solution earn nothing;
5. optionally adds Gaussian noise to ``total`` (``RewardNoise.noisy_rewards``);
6. places rewards on tokens (``[N, T]``), "dense + sparse":
     * ``dense_mix`` ∈ [0, 1] of the step credit (``w_correctness · step_weight /
       (credited + invalid steps)`` per credited step, when step credit is earned: the
       valid steps that make progress, as ``composite.score`` counts them) goes on the
       token that ends each credited step, so an idle ``1=1`` gets none; the rest of
       ``total`` goes on the last token (EOS, or the last token of a truncated
       completion). The row sums to ``total``.
     * ``step_shaping`` α adds the potential-based term of ``dense.step_shaping``
       (−α on the end of the first wrong step, else on the last token).

It returns ``(scores [N, F], token_rewards [N, T])``. PPO uses ``token_rewards``
(GAE over per-token rewards); GRPO uses ``scores[:, 0]`` (``total``), one number per
sequence, and ignores placement.

All randomness comes from ``noise.derive_rng(seed, step, index)``, and the novelty
tracker's state is saved with every checkpoint (``state_dict``), so a resumed run
computes the same rewards as an uninterrupted one.

Failures. An item whose verifier raises, hangs past the pool's deadline or kills its
worker gets the pool's fallback row (zeros: a failed completion), and the call goes on;
``failures`` / ``timeouts`` / ``errors`` count such items over all calls and each call
with failures logs one warning. Any other exception in the callback (decoding, novelty,
a missing reference, a bug) is not papered over with zeros: the call raises a
``RewardError`` naming the RL iteration and the cause, also kept in ``error`` for the
training loop (``raise_if_failed``), and the jitted iteration fails.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import traceback

import numpy as np

from r1jax.errors import RewardError
from r1jax.rewards import dense as dense_lib
from r1jax.rewards import noise as noise_lib
from r1jax.rewards import novelty as novelty_lib
from r1jax.rewards import verifier as verifier_lib
from r1jax.rewards.composite import SCORE_FIELDS

__all__ = ["HostReward", "Placement"]

_log = logging.getLogger(__name__)
_MAX_ROWS_LOGGED = 8  # failed row indices named in one warning line

_TOTAL = SCORE_FIELDS.index("total")
_NOVELTY = SCORE_FIELDS.index("novelty")
_CORRECT = SCORE_FIELDS.index("answer_correct")


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where rewards go on the tokens (module docstring, point 6)."""

    dense_mix: float = 0.0  # share of the step credit placed on step-end tokens
    step_shaping: float = 0.0  # α of potential-based step shaping

    def __post_init__(self):
        for name, hi in (("dense_mix", 1.0), ("step_shaping", float("inf"))):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= hi:
                raise ValueError(
                    f"reward.{name}={v!r}: must be a number in [0, {hi}] (0 switches it off)"
                )


class HostReward:
    """The io_callback target ``(tokens [N,T], refs [N,2], step) -> (scores [N, F],
    token_rewards [N, T])`` (see the module docstring).

    ``scorer`` (a ``scoring.TaskScorer``) holds the task's verifier, the reward config
    and the worker pool; ``tokenizer`` needs ``decode_with_offsets``. References stay on
    the host: ``register(key, problems, prompts)`` stores a batch's references (any
    length) and returns the ``[B, 2]`` int32 ids ``(key, row)`` the device carries
    through the iteration; the callback looks its rows up by them. Keys are the RL
    iteration: when the callback of iteration k runs, the batches of earlier iterations
    are done and dropped (iterations run in order; the loop may register ahead of the
    device by any number). At most ``keep_batches`` are kept in any case (memory bound).

    Failure accounting (module doc, "Failures"): ``failures`` (items scored as failures
    by the pool: ``timeouts`` + ``errors``) and ``restarts`` (worker processes replaced)
    are totals over all calls, cheap to diff per iteration; ``error`` holds the first
    ``RewardError`` not yet taken by ``raise_if_failed``.
    """

    def __init__(
        self,
        scorer,
        tokenizer,
        *,
        group_size: int,
        placement: Placement | None = None,
        noise: noise_lib.RewardNoise | None = None,
        novelty: novelty_lib.NoveltyTracker | None = None,
        keep_batches: int = 4096,
    ):
        self.scorer, self.pool = scorer, scorer.pool
        self.tokenizer, self.group_size = tokenizer, int(group_size)
        self.cfg, self.verifier = scorer.cfg, scorer.verifier
        self.placement = Placement() if placement is None else placement
        self.noise = noise_lib.RewardNoise() if noise is None else noise
        self.parse = getattr(self.verifier, "parse", verifier_lib.parse_solution)
        self.step_ends = getattr(self.verifier, "step_ends", dense_lib.step_ends)
        self.novelty = novelty_lib.NoveltyTracker() if novelty is None else novelty
        self.keep_batches = int(keep_batches)
        self._batches: dict[int, list[tuple[str, tuple[str, ...], str]]] = {}
        self._lock = threading.Lock()  # one scoring call at a time (novelty trees)
        self._table_lock = threading.Lock()  # the reference table (register never waits
        # for a scoring call)
        self.failures = self.timeouts = self.errors = self.restarts = 0
        self.error: RewardError | None = None

    def register(self, key: int, problems, prompts) -> np.ndarray:
        """Stores the references of one batch of prompts under ``key`` (an int32, e.g.
        the RL iteration) and returns their ids ``[B, 2]`` = ``(key, row)``: the
        ``PromptBatch.ref`` the device carries. ``prompts`` (texts) key the novelty
        trees, one per prompt."""
        if len(problems) != len(prompts):
            raise ValueError("register: one prompt per problem")
        entry = [(*self.scorer.reference(p), str(q)) for p, q in zip(problems, prompts)]
        with self._table_lock:
            self._batches.pop(int(key), None)
            self._batches[int(key)] = entry
            while len(self._batches) > self.keep_batches:
                self._batches.pop(next(iter(self._batches)))
        ids = np.zeros((len(entry), 2), np.int32)
        ids[:, 0], ids[:, 1] = int(key), np.arange(len(entry))
        return ids

    def _lookup(self, refs_n2) -> list[tuple[str, tuple[str, ...], str]]:
        ids = np.asarray(refs_n2).reshape(-1, 2).tolist()
        with self._table_lock:
            if ids:  # earlier iterations are finished: their references can go
                first = min(key for key, _ in ids)
                for old in [k for k in self._batches if k < first]:
                    del self._batches[old]
            table = dict(self._batches)
        out = []
        for key, row in ids:
            batch = table.get(key)
            if batch is None or not 0 <= row < len(batch):
                raise KeyError(
                    f"HostReward: no registered reference for batch {key} row {row}; build "
                    "RL batches with Experiment.rl_batch (HostReward.register) before the step"
                )
            out.append(batch[row])
        return out

    def __call__(self, tokens_nt, refs_n2, step, row_offset=0):
        """Scores rows `row_offset + i` of the global batch (whole groups).

        A data-parallel shard passes its rows and their global offset (the per-shard
        reward path, `rl_step`): every draw is keyed by the global row index, so the
        shards together compute exactly what one call on the global batch computes.
        Calls from several devices' threads are serialised.

        Raises ``RewardError`` (also stored in ``error``) when anything but a per-item
        verifier failure goes wrong (module doc, "Failures").
        """
        with self._lock:
            try:
                return self._score(tokens_nt, refs_n2, step, row_offset)
            except Exception as e:
                err = self._as_reward_error(e, step)
                raise err from e

    def _as_reward_error(self, e: Exception, step) -> RewardError:
        try:
            where = f"global step {int(np.asarray(step))}"
        except Exception:  # noqa: BLE001  (the step itself may be what is broken)
            where = f"global step {step!r}"
        err = RewardError(f"host reward failed at {where}: {type(e).__name__}: {e}")
        err.__cause__ = e
        err.traceback = traceback.format_exc()  # the original's, for logs and reports
        if self.error is None:  # the first failure is the one to report
            self.error = err
        return err

    def raise_if_failed(self) -> None:
        """Raises the stored ``RewardError`` (and clears it); returns if there is none.

        For the training loop: when the host callback raises inside the jitted RL
        iteration, JAX does not hand that exception back. The jitted call (through
        ``train.reward_callback.host_rewards``, which makes every device fail together,
        so none waits in a collective) raises ``jax.errors.JaxRuntimeError`` (a
        ``RuntimeError``; jaxlib's ``XlaRuntimeError`` of older JAX) whose text is
        ``INTERNAL: CpuCallback error calling callback: Traceback ...`` ending in
        ``RewardError: host reward failed at global step N: <type>: <message>`` (N as in
        metrics.jsonl: SFT steps, then RL iterations). On CPU
        it raises at the call; with asynchronous dispatch (GPU, TPU) at the call or at
        the first read of any output of that iteration (``block_until_ready``,
        ``float(metric)``), and the outputs (the donated state) are lost. The process
        stays usable: later jitted calls run. So::

            try:
                state, metrics = rl_fn(state, batch); jax.block_until_ready(metrics)
            except jax.errors.JaxRuntimeError:
                host_reward.raise_if_failed()  # the clear RewardError, if it was the reward
                raise

        The raised error's ``__cause__`` is the original exception, its ``traceback``
        attribute the original's formatted traceback.
        """
        err, self.error = self.error, None
        if err is not None:
            raise err

    def _score(self, tokens_nt, refs_n2, step, row_offset):
        tokens_nt = np.asarray(tokens_nt)
        n, t = tokens_nt.shape
        step = int(np.asarray(step))
        r0 = int(np.asarray(row_offset))
        refs = self._lookup(refs_n2)
        decoded = [self.tokenizer.decode_with_offsets(row) for row in tokens_nt]
        texts = [self.noise.perturb(text, step, r0 + i) for i, (text, _) in enumerate(decoded)]
        items = [(text, answer, subgoals) for text, (answer, subgoals, _) in zip(texts, refs)]
        before = (dict(self.pool.stats), getattr(self.pool, "last_batch", None))
        scores = np.array(self.scorer.score_items(items), np.float32)
        self._count_failures(before, step, r0, n)
        if self.cfg.w_novelty > 0:
            self._add_novelty(scores, [key for _, _, key in refs], texts)
        if self.noise.reward_std > 0:  # one draw per row, keyed by its global index
            for i in range(n):
                noisy = self.noise.noisy_rewards(scores[i : i + 1, _TOTAL], step, r0 + i)
                scores[i, _TOTAL] = noisy[0]
        rewards = np.zeros((n, t), np.float32)
        for i, (text, offsets) in enumerate(decoded):
            rewards[i] = self._place(text, offsets, scores[i], t)
        return scores, rewards

    def _count_failures(self, before: tuple, step: int, r0: int, n: int) -> None:
        """Adds the pool's failures of this call to the totals; one warning if any."""
        stats, last = before
        batch = getattr(self.pool, "last_batch", None)  # this thread's batch: exact even
        if batch is None or batch is last:  # with a shared pool; else the stats delta
            batch = {k: self.pool.stats.get(k, 0) - stats.get(k, 0) for k in stats}
        t, e = int(batch.get("timeouts", 0)), int(batch.get("errors", 0))
        self.timeouts, self.errors = self.timeouts + t, self.errors + e
        self.failures += t + e
        self.restarts += int(batch.get("restarts", 0))
        if t + e:
            rows = [r0 + i for i, _ in batch.get("failed", ())]
            shown = ", ".join(map(str, rows[:_MAX_ROWS_LOGGED]))
            more = ", ..." if len(rows) > _MAX_ROWS_LOGGED else ""
            _log.warning(
                "host reward, global step %d: %d of %d items failed (%d timeouts, %d errors)"
                ": scored as failures%s",
                step,
                t + e,
                n,
                t,
                e,
                f" (rows {shown}{more})" if rows else "",
            )

    def _add_novelty(self, scores, keys, texts):
        g = self.group_size
        for start in range(0, len(texts), g):
            key = keys[start]
            group = []
            for i in range(start, start + g):
                parsed = self.parse(texts[i])
                steps = parsed.steps[: verifier_lib.MAX_CHECKED_STEPS]
                path = novelty_lib.progress_steps(steps, parsed.answer)
                group.append((path, bool(scores[i, _CORRECT])))
            for i, value in zip(range(start, start + g), self.novelty.score_group(key, group)):
                scores[i, _NOVELTY] = value
                scores[i, _TOTAL] += self.cfg.w_novelty * value

    def _place(self, text, offsets, row, length):
        # Positions follow the completion as sampled (perturbation keeps the steps).
        char_rewards = []
        p, cfg = self.placement, self.cfg
        earned = row[_CORRECT] > 0 or not cfg.step_credit_requires_correct
        ends = self.step_ends(text) if p.dense_mix > 0 or p.step_shaping > 0 else []
        if p.dense_mix > 0 and cfg.step_weight > 0 and earned:
            credited, share = self._credited_ends(text, ends)
            if credited:
                per_step = p.dense_mix * cfg.w_correctness * cfg.step_weight / share
                char_rewards += [(end, per_step) for end in credited]
        placed = sum(r for _, r in char_rewards)
        char_rewards.append((len(text), float(row[_TOTAL]) - placed))
        if p.step_shaping > 0:
            char_rewards += dense_lib.step_shaping(text, p.step_shaping, ends)
        return dense_lib.token_rewards(char_rewards, offsets, length)

    def _credited_ends(self, text, ends) -> tuple[list[int], int]:
        """The ends of the steps that earn step credit, and how many steps share it
        (``composite.score``: the progress steps among the valid ones, plus the invalid
        ones). A verifier without ``parse`` credits every valid step, as its score does
        unless its ``Verdict`` counts ``credited_steps``."""
        invalid = sum(1 for _, valid in ends if not valid)
        if not hasattr(self.verifier, "parse"):
            return [end for end, valid in ends if valid], len(ends)
        parsed = self.verifier.parse(text)
        steps = parsed.steps[: len(ends)]
        if len(steps) != len(ends):  # a verifier whose steps and step ends disagree
            return [end for end, valid in ends if valid], len(ends)
        flags = novelty_lib.progress_flags(steps, parsed.answer, [v for _, v in ends])
        credited = [end for (end, _), keep in zip(ends, flags) if keep]
        unchecked = len(parsed.steps) - len(ends)  # past MAX_CHECKED_STEPS: invalid
        return credited, len(credited) + invalid + unchecked

    # Checkpointed state (the novelty trees).
    def state_dict(self) -> dict:
        return {"novelty": self.novelty.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.novelty.load_state_dict(state["novelty"])
