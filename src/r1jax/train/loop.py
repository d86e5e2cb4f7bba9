"""The outer loop: SFT warm start, RL, evaluation, checkpoints, summary.

Resume: the newest readable checkpoint (RL, else SFT) in `workdir` is restored and the
loop continues from its step; data batches are pure functions of (seed, phase, step), the
PRNG key and the controllers live in the state, each process's host reward state (novelty
trees, verifier-pool counters) and the metric window live in the checkpoint's record, and
`metrics.jsonl` is cut back to the restored step, so a resumed run reproduces the
uninterrupted one, summary included (wall-clock fields aside).

Nothing of an existing run is written before it is known to be right: the new config is
checked against the run's `config.json` (`check_resume`) and the checkpoint is restored
before `config.json`, metrics or checkpoints change; a refused resume leaves the workdir
byte-identical.
"""

from __future__ import annotations

import json
import logging
import os
import time

import jax
import numpy as np

from r1jax import config as config_lib
from r1jax.checkpoint import Checkpointer, restore_readable
from r1jax.distributed import is_main_process
from r1jax.errors import ConfigError
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
            old = self.sums.get("score_fields")
            if old is not None and old.shape[-1:] < (len(SCORE_FIELDS),):
                # Saved before a score field was added (has_answer): its sum over this
                # window is unknown, so the window's row leaves it out (NaN, `_fetch`).
                pad = [(0, 0)] * (old.ndim - 1) + [(0, len(SCORE_FIELDS) - old.shape[-1])]
                self.sums["score_fields"] = np.pad(old, pad, constant_values=np.nan)

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
        if k == "score_fields":  # NaN: unknown (`_Window`), left out
            out.update(
                {f: float(x) for f, x in zip(SCORE_FIELDS, np.asarray(v)) if not np.isnan(x)}
            )
        else:
            out[k] = float(v)
    if "total" in out:
        out["reward_mean"] = out.pop("total")
        out["accuracy"] = out.pop("answer_correct")
    return out


# Fields a resumed run may change: where and how it runs, not what it computes.
RESUMABLE_CHANGES = (
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "reward.num_workers",
    "reward.deadline_s",
    "reward.verify_where",
    "reward.host_call",
    "eval.batch_size",
    "parallelism",
    "mesh.data",
    "mesh.fsdp",
    "mesh.tensor",
    "model.remat",
    "model.attention",
    "model.layer_loop",
    "rl.logp_chunk",
    "rl.logit_chunk",
    "sft.logit_chunk",
    "pretrained",
    "task_module",
)


def saved_checkpoints(workdir: str) -> list[str]:
    """The checkpoint steps saved under `workdir` ("sft/600", "rl/30", ...), read from
    the directory listing only (nothing is created or restored)."""
    ckdir = os.path.join(workdir, "checkpoints")
    return [
        f"{phase}/{d}"
        for phase in ("sft", "rl")
        if os.path.isdir(os.path.join(ckdir, phase))
        for d in sorted(os.listdir(os.path.join(ckdir, phase)), key=lambda d: (len(d), d))
        if d.isdigit()
    ]


def check_resume(c, workdir: str) -> None:
    """Raises ConfigError if `workdir` holds a run whose `config.json` differs from `c`
    in a field a resume may not change (`RESUMABLE_CHANGES` may): a resumed run
    continues the same computation. Reads only."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        # Every run writes config.json before its first checkpoint: checkpoints without it
        # would resume under whatever settings this command has.
        made = saved_checkpoints(workdir)
        if made:
            raise ConfigError(
                f"--workdir={workdir} holds checkpoints ({', '.join(made)}) but no config.json "
                "(the settings they were made with): put the run's config.json back to "
                "resume it, or pass a new --workdir"
            )
        return
    try:
        with open(path) as f:
            import ml_collections

            known, _ = config_lib.drop_unknown(json.load(f))  # an older version's fields
            saved = config_lib.complete(ml_collections.ConfigDict(known))
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"--workdir={workdir}: its config.json cannot be read ({e}): pass a new --workdir"
        ) from e
    old = dict(config_lib.leaves(json.loads(saved.to_json_best_effort())))
    new = dict(config_lib.leaves(json.loads(c.to_json_best_effort())))
    changed = [
        f
        for f in sorted(set(old) | set(new))
        if f not in RESUMABLE_CHANGES and old.get(f) != new.get(f)
    ]
    if changed:  # all of them: one may follow from another (an override's reset fields)
        shown = ", ".join(f"config.{f}={new.get(f)!r}" for f in changed[:6])
        was = ", ".join(repr(old.get(f)) for f in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise ConfigError(
            f"{shown}{more} {'differs' if len(changed) == 1 else 'differ'} from the run in "
            f"{workdir} ({was} in its config.json): a resumed run keeps its settings; drop "
            "the change to resume it, or pass a new --workdir to start another run",
            field=changed[0],
        )


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sync(name: str) -> None:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def gather_json(obj) -> list:
    """`obj` (JSON-serialisable) of every process, in process order (one process: [obj])."""
    if jax.process_count() == 1:
        return [obj]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64)))
    buf = np.zeros(int(sizes.max()), np.uint8)
    buf[: data.size] = data
    every = np.asarray(multihost_utils.process_allgather(buf))
    return [json.loads(bytes(every[i, : int(n)]).decode()) for i, n in enumerate(sizes[:, 0])]


def _host_states(exp: Experiment) -> list:
    """Each process's host reward state and verifier-pool counters (checkpointed)."""
    own = {"reward": exp.host_reward.state_dict(), "pool": dict(exp.pool.stats)}
    return gather_json(own)


def _load_host_state(exp: Experiment, meta: dict) -> None:
    states = meta.get("host_states")
    if states is None and "host_reward" in meta:  # checkpoints of one process, older format
        states = [{"reward": meta["host_reward"], "pool": meta.get("reward_pool", {})}]
    if not states:
        return
    i, n = jax.process_index(), jax.process_count()
    if len(states) != n:
        log.warning(
            "the checkpoint holds the host reward state of %d process(es), this run has %d: "
            "every process starts from process 0's",
            len(states),
            n,
        )
        i = 0
    exp.host_reward.load_state_dict(states[i]["reward"])
    exp.pool.stats.update(states[i]["pool"])


def _pool_totals(exp: Experiment) -> dict:
    """The verifier pools' counters summed over the processes."""
    total: dict = {}
    for stats in gather_json(dict(exp.pool.stats)):
        for k, v in stats.items():
            total[k] = total.get(k, 0) + v
    return total


def train(c, workdir: str, mesh=None, stop_after: int | None = None) -> dict:
    """Runs (or resumes) SFT then RL in `workdir`; returns the summary dict.

    `stop_after` (tests) stops once the global step reaches it, as a kill would.
    """
    t0 = time.time()
    config_lib.validate(c)
    check_resume(config_lib.complete(c), workdir)  # a refused resume writes nothing
    exp = Experiment(c, workdir, mesh)
    try:
        os.makedirs(workdir, exist_ok=True)
        ckpt = Checkpointer(workdir, keep=exp.c.keep_checkpoints)
        try:
            return _run(exp, ckpt, workdir, t0, stop_after)
        finally:
            ckpt.close()
    finally:
        exp.close()


def _run(exp: Experiment, ckpt: Checkpointer, workdir: str, t0: float, stop_after):
    c = exp.c
    state, meta, resume_step = exp.init_state, {}, None
    restored = restore_readable(
        ckpt,
        lambda phase, step: exp.restore(ckpt, phase, step),
        set_aside=is_main_process(),
        sync=_sync if jax.process_count() > 1 else None,
    )
    if restored is not None:
        phase, resume_step, (state, meta) = restored
        _load_host_state(exp, meta)
        log.info("resumed from %s checkpoint at step %d", phase, resume_step)
    # The loop owns the state from here: the experiment's initial one, no longer needed
    # (it served the restore), is let go, or it would stay alive beside the state the run
    # trains (a resumed run; pmap's, whose replicas are copies of it; R1-Zero, whose
    # start_rl donation frees only the buffers it reuses): a second state on the device,
    # up to ~8 GB at 0.5B in float32 (params, reference, Adam moments).
    exp.init_state = None
    # Only now, with the config checked against the run and its checkpoint read, does
    # anything in the workdir change.
    if is_main_process():
        _write_atomic(os.path.join(workdir, "config.json"), c.to_json_best_effort(indent=2))
        exp.save_hf_files()
    state = exp.put_state(state)  # pmap: one replica per local device; jit: as is
    host = exp.host_state  # the canonical (single) state, for evaluation and checkpoints
    prior_wall = float(meta.get("wall_seconds", 0.0))
    wall = lambda: prior_wall + time.time() - t0
    # Resumed from the last checkpoint (a finished run, or one stopped before its final
    # evaluation was written): that evaluation is written again, so an earlier copy goes.
    # It is the only "eval" row at that step (rl.iterations >= 1; periodic ones stop
    # before the end).
    at_end = resume_step == c.sft.steps + c.rl.iterations
    writer = MetricsWriter(
        workdir, resume_step, enabled=is_main_process(), drop_evals_at_resume=at_end
    )
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
            meta = {
                "phase": "sft",
                "sft_eval": sft_eval,
                "wall_seconds": wall(),
                "host_states": _host_states(exp),
            }
            ckpt.save("sft", step, exp.checkpoint_view(host(state)), meta)
            if stopped(step):
                return {}
        # Phase 2: RL.
        first_rl = c.sft.steps
        end = first_rl + c.rl.iterations
        t_phase, it_done = time.time(), 0
        window = _Window(meta.get("metric_window") if meta.get("phase") == "rl" else None)
        try:
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
                            host_states=_host_states(exp),
                            metric_window=window.state_dict(),
                        ),
                    )
                if stopped(step):
                    return {}
        except jax.errors.JaxRuntimeError:
            # A host reward that raised fails the jitted iteration on every device; its
            # RewardError (the iteration and the cause) replaces XLA's wrapper.
            exp.host_reward.raise_if_failed()
            raise
        final = exp.evaluate(exp.eval_params(host(state)))
        writer.write(step, "eval", final)
        summary = {
            "sft": meta["sft_eval"],
            "rl": final,
            "wall_seconds": wall(),
            "steps": {"sft": c.sft.steps, "rl": c.rl.iterations},
            "reward_pool": _pool_totals(exp),
            "skipped_updates": int(host(state).skipped),
        }
        if is_main_process():
            _write_atomic(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2))
    finally:
        writer.close()
    if is_main_process():
        plot_metrics(writer.path, os.path.join(workdir, "reward_accuracy.png"))
    return summary
