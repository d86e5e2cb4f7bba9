"""The pmap path on 8 fake CPU devices gives the numbers of the jit path on one device.

2 SFT steps and 3 RL iterations of the smoke config (8 rows, 8 prompts), PPO and GRPO:
`make_pmap_steps` over 8 and over 2 devices gives the losses (loss, pg_loss, vf_loss,
kl, entropy), the gradient norm (a `pmean` instead of a `psum` would show there), other
metrics and the final parameters (policy and critic) of `Experiment.sft_fn`/`rl_fn`
on a one-device mesh within 1e-5. Reward noise (seeded by the row's global index) gives
the untrained policy non-zero rewards, so advantages, policy and value losses are not 0,
and rows whose rewards came back to the wrong device would show. A third variant turns on the paths with their own global statistics
(prioritised minibatches, forking-token mask, two epochs, sequence-mean aggregation) and
the learner's length buckets (a `lax.switch` on the global longest completion, `pmax`;
two buckets: each one more compiles a copy of the learner, 3 took 7 s more here).
The RL iteration runs as two programs with the host reward between them (the default);
on 8 devices the one program with the `io_callback` gives the same numbers bit for bit.
"""

import json
import subprocess
import sys
import textwrap

import pytest

from r1jax._testing import xla_env

SCRIPT = textwrap.dedent("""
    import json, sys, jax, numpy as np
    from r1jax import parallel
    from r1jax.configs.arith_tiny import get_config
    from r1jax.train.experiment import Experiment
    from r1jax.train.pmap import make_pmap_steps

    METRICS = ("loss", "pg_loss", "vf_loss", "kl", "entropy", "grad_norm", "approx_kl",
               "clip_frac", "clip_eps", "completion_len")
    VARIANTS = {
        "ppo": {},
        "grpo": {"algo": "grpo"},
        "ppo_extras": {"prioritized": True, "top_entropy_q": 0.5, "epochs": 2,
                       "loss_agg": "seq_mean_token_mean", "length_buckets": 2},
    }

    def run(variant, n_devices, host_call="split"):
        c = get_config("smoke")
        with c.unlocked():
            c.sft.rows = 8
            c.rl.prompts_per_iter = 8
            c.reward.num_workers = 0
            c.reward.noise_std = 0.5  # non-zero rewards from an untrained policy
            c.rl.update(warmup=1, policy_lr=1e-3)  # parameters move from the 2nd iteration
            c.rl.update(VARIANTS[variant])
            c.reward.host_call = host_call
        exp = Experiment(c, "/tmp/unused", mesh=parallel.make_mesh(1, 1, 1))
        if n_devices == 0:  # the jit path on one device
            sft_fn, rl_fn, start = exp.sft_fn, exp.rl_fn, exp.start_rl
            state, final = exp.init_state, lambda s: s
        else:
            steps = make_pmap_steps(exp, devices=jax.devices()[:n_devices])
            sft_fn, rl_fn, start = steps.sft_fn, steps.rl_fn, steps.start_rl
            state, final = steps.replicate(exp.init_state), steps.unreplicate
        out = []
        for s in range(2):
            state, m = sft_fn(state, exp.sft_batch(s))
            out.append(float(m["loss"]))
        state = start(state)
        for i in range(3):
            state, m = rl_fn(state, exp.rl_batch(i))
            out += [float(m[k]) for k in METRICS] + np.asarray(m["score_fields"]).tolist()
        state = final(state)
        params = [np.asarray(x) for x in jax.tree.leaves((state.policy, state.value))]
        exp.close()
        return out, params, int(state.step)

    if __name__ == "__main__":
        assert jax.device_count() == 8, jax.devices()
        variant = sys.argv[1]
        base, base_params, base_step = run(variant, 0)
        result = {}
        for n in (8, 2):
            out, params, step = run(variant, n)
            diff = max(float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(a)))))
                       for a, b in zip(base_params, params))
            result[str(n)] = {"out": out, "param_diff": diff, "step": step}
            if n == 8 and variant == "ppo":  # the one-program iteration: the same numbers
                cb, cb_params, _ = run(variant, n, "io_callback")
                result["cb_equal"] = cb == out and all(
                    np.array_equal(a, b) for a, b in zip(params, cb_params))
        print(json.dumps({"base": base, "base_step": base_step, "pmap": result}))
""")

VARIANTS = ["ppo", "grpo", "ppo_extras"]


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("pmap") / "pmap_check.py"
    path.write_text(SCRIPT)
    return path


@pytest.mark.parametrize("variant", VARIANTS)
def test_pmap_matches_one_device_jit(script, variant):
    # "ppo" also compares the one-program iteration bit for bit: XLA's own fusions there
    env = xla_env(devices=8, bitwise=variant == "ppo")
    r = subprocess.run(
        [sys.executable, str(script), variant],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    base = res["base"]
    assert len(base) > 2 + 3 * 10 and res["base_step"] == 5
    if variant == "ppo":  # reward.host_call="io_callback" on 8 devices: bit for bit
        assert res["pmap"].pop("cb_equal") is True
    for n, run in res["pmap"].items():
        assert run["step"] == res["base_step"] and len(run["out"]) == len(base), n
        for a, b in zip(base, run["out"]):
            assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (n, base, run["out"])
        assert run["param_diff"] <= 1e-5, (n, run["param_diff"])


def test_pmap_path_trains_end_to_end_and_resumes_like_the_cli(tmp_path):
    # The whole loop on the pmap path (2 fake devices): outputs written, and a run killed
    # after RL iteration 2 and restarted gives the uninterrupted metrics.
    script = tmp_path / "pmap_loop.py"
    script.write_text(
        textwrap.dedent("""
        import json, sys
        from r1jax.configs.arith_tiny import get_config
        from r1jax.train.experiment import compile_report
        from r1jax.train.loop import train

        if __name__ == "__main__":
            c = get_config("smoke")
            with c.unlocked():
                c.parallelism = "pmap"
                c.reward.num_workers = 0
            full = train(c, sys.argv[1])
            train(c, sys.argv[2], stop_after=c.sft.steps + 2)
            resumed = train(c, sys.argv[2])
            rep = compile_report(c)
            print(json.dumps({"full": full["rl"], "resumed": resumed["rl"],
                              "devices": rep["devices"]}))
        """)
    )
    env = xla_env(devices=2)
    a, b = tmp_path / "a", tmp_path / "b"
    r = subprocess.run(
        [sys.executable, str(script), str(a), str(b)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    assert out["full"] == out["resumed"]

    def rows(d):  # wall-clock timings differ between runs; everything else must not
        lines = [json.loads(x) for x in open(d / "metrics.jsonl")]
        return [{k: v for k, v in x.items() if k != "iter_seconds"} for x in lines]

    assert rows(a) == rows(b)
    assert (a / "summary.json").exists() and (a / "reward_accuracy.png").exists()
