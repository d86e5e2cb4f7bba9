"""The outer loop: SFT warm start, RL, evaluation, checkpoints, summary.

Resume: the newest checkpoint (RL, else SFT) in `workdir` is restored and the loop
continues from its step; data batches are pure functions of (seed, phase, step), the
PRNG key and the controllers live in the state, and `metrics.jsonl` is cut back to the
restored step, so a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax
import numpy as np

from r1jax.checkpoint import Checkpointer
from r1jax.distributed import is_main_process
from r1jax.rewards.composite import SCORE_FIELDS
from r1jax.train.experiment import Experiment, compile_report
from r1jax.train.metrics import MetricsWriter, plot_metrics

__all__ = ["Experiment", "compile_report", "train"]

log = logging.getLogger("r1jax")


# RL metrics that are counters or controller states: a window row shows the last value.
_LAST = ("skipped_updates",)


class _Window:
    """Sums of the RL metrics since the last logged row, on device (no host sync): a row
    is their mean over the window. Checkpointed with the run (`state_dict`), so a resumed
    run logs the same rows as an uninterrupted one."""

    def __init__(self, state: dict | None = None):
        self.sums, self.count = None, 0
        if state and int(state["count"]):
            self.sums = {k: np.asarray(v, np.float32) for k, v in state["sums"].items()}
            self.count = int(state["count"])

    def add(self, metrics):
        self.sums = (
            metrics
            if self.sums is None
            else {k: (v if k in _LAST else self.sums[k] + v) for k, v in metrics.items()}
        )
        self.count += 1

    def mean(self) -> dict:
        m = jax.device_get(self.sums)
        out = {k: v if k in _LAST else np.asarray(v) / self.count for k, v in m.items()}
        self.sums, self.count = None, 0
        return out

    def state_dict(self) -> dict:
        if self.sums is None:
            return {"count": 0, "sums": {}}
        m = jax.device_get(self.sums)
        return {"count": self.count, "sums": {k: np.asarray(v).tolist() for k, v in m.items()}}


def _fetch(metrics) -> dict:
    m = jax.device_get(metrics)
    out = {}
    for k, v in m.items():
        if k == "score_fields":
            out.update({f: float(x) for f, x in zip(SCORE_FIELDS, np.asarray(v))})
        else:
            out[k] = float(v)
    if "total" in out:
        out["reward_mean"] = out.pop("total")
        out["accuracy"] = out.pop("answer_correct")
    return out


def train(c, workdir: str, mesh=None, stop_after: int | None = None) -> dict:
    """Runs (or resumes) SFT then RL in `workdir`; returns the summary dict.

    `stop_after` (tests) stops once the global step reaches it, as a kill would.
    """
    t0 = time.time()
    exp = Experiment(c, workdir, mesh)  # validates the config before anything is written
    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpointer(workdir, keep=exp.c.keep_checkpoints)
    try:
        return _run(exp, ckpt, workdir, t0, stop_after)
    finally:
        ckpt.close()
        exp.close()


def _run(exp: Experiment, ckpt: Checkpointer, workdir: str, t0: float, stop_after):
    c = exp.c
    if is_main_process():
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(c.to_json_best_effort(indent=2))
        exp.save_hf_files()
    state, meta, resume_step = exp.init_state, {}, None
    try:
        phase, step = ckpt.find(None)
        state, meta = exp.restore(ckpt, phase, step)
        if "host_reward" in meta:
            exp.host_reward.load_state_dict(meta["host_reward"])
        resume_step = step
        log.info("resumed from %s checkpoint at step %d", phase, step)
    except FileNotFoundError:
        pass
    state = exp.put_state(state)  # pmap: one replica per local device; jit: as is
    host = exp.host_state  # the canonical (single) state, for evaluation and checkpoints
    prior_wall = float(meta.get("wall_seconds", 0.0))
    wall = lambda: prior_wall + time.time() - t0
    writer = MetricsWriter(workdir, resume_step, enabled=is_main_process())
    stopped = lambda s: stop_after is not None and s >= stop_after
    try:
        step = int(host(state).step)
        # Phase 1: SFT warm start.
        if step < c.sft.steps:
            t_phase = time.time()
            for s in range(step, c.sft.steps):
                state, m = exp.sft_fn(state, exp.device_batch(exp.sft_batch(s)))
                if (s + 1) % c.log_every == 0 or s + 1 == c.sft.steps:
                    row = writer.write(s + 1, "sft", _fetch(m))
                    log.info(
                        "sft %d/%d loss %.4f tok_acc %.3f (%.1fs)",
                        s + 1,
                        c.sft.steps,
                        row["loss"],
                        row["token_accuracy"],
                        time.time() - t_phase,
                    )
                if stopped(s + 1) and s + 1 < c.sft.steps:
                    return {}
            step = c.sft.steps
        if "sft_eval" not in meta:
            sft_eval = exp.evaluate(exp.eval_params(host(state)))
            writer.write(step, "eval", sft_eval)
            if c.eval.curve_every:
                writer.write(step, "curve", exp.evaluate_curve(exp.eval_params(host(state))))
            log.info("SFT held-out: %s", json.dumps(sft_eval))
            # The SFT checkpoint is the RL starting point: policy, fresh RL optimizers and the
            # frozen reference (= this policy), so resuming from it starts RL exactly.
            state = exp.start_rl(state)
            meta = {"phase": "sft", "sft_eval": sft_eval, "wall_seconds": wall()}
            ckpt.save("sft", step, exp.checkpoint_view(host(state)), meta)
            if stopped(step):
                return {}
        # Phase 2: RL.
        first_rl = c.sft.steps
        end = first_rl + c.rl.iterations
        t_phase, it_done = time.time(), 0
        window = _Window(meta.get("metric_window") if meta.get("phase") == "rl" else None)
        while step < end:
            state, m = exp.rl_fn(state, exp.device_batch(exp.rl_batch(step - first_rl)))
            window.add(m)
            step += 1
            it_done += 1
            if (step - first_rl) % c.log_every == 0 or step == end:
                row = _fetch(window.mean())
                dt = (time.time() - t_phase) / it_done
                row.update(iter_seconds=dt)
                writer.write(step, "rl", row)
                log.info(
                    "rl %d/%d reward %.3f acc %.3f steps %.2f len %.1f kl %.4f clip %.3f "
                    "ent %.3f (%.2fs/it)",
                    step - first_rl,
                    c.rl.iterations,
                    row["reward_mean"],
                    row["accuracy"],
                    row["num_steps"],
                    row["completion_len"],
                    row["kl"],
                    row["clip_eps"],
                    row["entropy"],
                    dt,
                )
            if c.eval.curve_every and (step - first_rl) % c.eval.curve_every == 0:
                point = exp.evaluate_curve(exp.eval_params(host(state)))
                writer.write(step, "curve", point)
                log.info(
                    "rl %d/%d held-out subset: acc %.3f steps %.2f (%d problems)",
                    step - first_rl,
                    c.rl.iterations,
                    point["accuracy"],
                    point["mean_steps"],
                    point["num_problems"],
                )
            if c.eval.every and (step - first_rl) % c.eval.every == 0 and step < end:
                writer.write(step, "eval", exp.evaluate(exp.eval_params(host(state))))
            if (step - first_rl) % c.checkpoint_every == 0 or step == end:
                # The host reward's novelty trees must be those after this step's
                # io_callback: wait for the step before reading them.
                jax.block_until_ready(state)
                ckpt.save(
                    "rl",
                    step,
                    exp.checkpoint_view(host(state)),
                    dict(
                        meta,
                        phase="rl",
                        wall_seconds=wall(),
                        host_reward=exp.host_reward.state_dict(),
                        metric_window=window.state_dict(),
                    ),
                )
            if stopped(step):
                return {}
        final = exp.evaluate(exp.eval_params(host(state)))
        writer.write(step, "eval", final)
        summary = {
            "sft": meta["sft_eval"],
            "rl": final,
            "wall_seconds": wall(),
            "steps": {"sft": c.sft.steps, "rl": c.rl.iterations},
            "reward_pool": dict(exp.pool.stats),
            "skipped_updates": int(host(state).skipped),
        }
        if is_main_process():
            tmp = os.path.join(workdir, "summary.json.tmp")
            with open(tmp, "w") as f:
                json.dump(summary, f, indent=2)
            os.replace(tmp, os.path.join(workdir, "summary.json"))
    finally:
        writer.close()
    if is_main_process():
        plot_metrics(writer.path, os.path.join(workdir, "reward_accuracy.png"))
    return summary
