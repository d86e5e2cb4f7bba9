"""Per-shard host rewards: on a (2,2,2) mesh of 8 fake CPU devices each batch shard is
verified by its own host call (what a multi-process run needs: a host scores only the
samples it holds), once per tensor group, and the RL numbers equal the single global
call's, with reward noise and surface perturbation on (every draw is keyed by the
global row index). Both ways of calling the host (between two programs, the default, or
an io_callback inside one) give the same calls and the same numbers."""

import json
import subprocess
import sys
import textwrap

import numpy as np

from r1jax._testing import xla_env

SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    from r1jax import parallel
    from r1jax.configs.arith_tiny import get_config
    from r1jax.train.experiment import Experiment

    def run(shape, where, host_call="split"):
        c = get_config("smoke")
        with c.unlocked():
            c.sft.rows = 8
            c.rl.prompts_per_iter = 8
            c.reward.num_workers = 0
            c.reward.verify_where = where
            c.reward.host_call = host_call
            c.reward.noise_std = 0.1
            c.reward.perturb_prob = 0.5
            c.model.n_heads = 4
            c.model.n_kv_heads = 2
            c.model.head_dim = 8
        exp = Experiment(c, "/tmp/unused", mesh=parallel.make_mesh(*shape))
        calls = []
        score = exp.host_reward._score
        def spy(t, ref, s, r0):
            calls.append([int(np.asarray(r0)), len(t)])
            return score(t, ref, s, r0)
        exp.host_reward._score = spy
        state = exp.start_rl(exp.init_state)
        out = []
        for i in range(2):
            state, m = exp.rl_fn(state, exp.rl_batch(i))
            out += [float(m["loss"]), float(m["pg_loss"]), float(m["vf_loss"])]
            out += [float(x) for x in m["score_fields"]]
        exp.close()
        return out, sorted(calls)

    if __name__ == "__main__":
        one, one_calls = run((1, 1, 1), "global")
        shard, shard_calls = run((2, 2, 2), "per_shard")
        cb, cb_calls = run((2, 2, 2), "per_shard", "io_callback")
        glob, glob_calls = run((2, 2, 2), "global", "io_callback")
        print(json.dumps(dict(one=one, shard=shard, one_calls=one_calls, shard_calls=shard_calls,
                              cb=cb, cb_calls=cb_calls, glob=glob, glob_calls=glob_calls)))
""")


def test_per_shard_rewards_equal_the_global_call(tmp_path):
    script = tmp_path / "per_shard.py"
    script.write_text(SCRIPT)
    env = xla_env(devices=8, bitwise=True)  # the last check is bit for bit
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=900
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    # smoke: 8 prompts x 2 samples = 16 rows; one call per iteration on the global path,
    # 4 batch shards (data x fsdp) of 4 rows each, one call per tensor group, per shard.
    assert res["one_calls"] == [[0, 16], [0, 16]]
    assert res["shard_calls"] == sorted([[r0, 4] for r0 in (0, 4, 8, 12)] * 2)
    # Equal up to float reassociation (losses near zero get an absolute tolerance).
    np.testing.assert_allclose(res["shard"], res["one"], rtol=1e-4, atol=1e-6)
    # The one-program iteration (io_callback inside a shard_map) makes the same calls and
    # computes the same numbers as the split one (host calls between two programs).
    assert res["cb_calls"] == res["shard_calls"]
    assert res["cb"] == res["shard"]
    # One global io_callback on the mesh (its failure check then runs on every device, the
    # program traced under the mesh): one call per iteration, the one-device numbers.
    assert res["glob_calls"] == res["one_calls"]
    np.testing.assert_allclose(res["glob"], res["one"], rtol=1e-4, atol=1e-6)
