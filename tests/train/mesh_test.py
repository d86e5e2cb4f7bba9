"""On 8 fake CPU devices, a data-parallel mesh gives the single-device numbers."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys, jax, numpy as np
    from r1jax import parallel
    from r1jax.configs.arith_tiny import get_config
    from r1jax.train.loop import Experiment

    def run(data):
        c = get_config("smoke")
        with c.unlocked():
            c.sft.rows = 8
            c.rl.prompts_per_iter = 8
            c.reward.num_workers = 0
        exp = Experiment(c, "/tmp/unused", mesh=parallel.make_mesh(data))
        state, out = exp.init_state, []
        for s in range(2):
            state, m = exp.sft_fn(state, exp.sft_batch(s))
            out.append(float(m["loss"]))
        for i in range(3):
            state, m = exp.rl_fn(state, exp.rl_batch(i))
            out += [float(m["loss"]), float(m["pg_loss"]), float(m["vf_loss"]),
                    float(m["kl"]), float(m["entropy"])]
        shard = state.policy["model"]["embed"]["embedding"].sharding
        exp.close()
        return out, len(shard.device_set)

    if __name__ == "__main__":
        assert jax.device_count() == 8, jax.devices()
        one, n1 = run(1)
        eight, n8 = run(8)
        print(json.dumps({"one": one, "eight": eight, "devices": [n1, n8]}))
""")


def test_data_parallel_mesh_matches_one_device(tmp_path):
    script = tmp_path / "mesh_check.py"
    script.write_text(SCRIPT)
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8"
    )
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=900
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["devices"] == [1, 8]
    one, eight = out["one"], out["eight"]
    assert len(one) == len(eight) == 2 + 3 * 5
    for a, b in zip(one, eight):
        assert abs(a - b) <= 1e-5 * max(1.0, abs(a)), (one, eight)
