"""Meshes, logical-axis rules and shardings on 8 fake CPU devices.

The multi-device checks run in one subprocess (XLA_FLAGS must be set before JAX is
imported) that reports each check's outcome as JSON; the path/rank checks run here.
"""

import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import nnx

from r1jax import parallel
from r1jax._testing import xla_env
from r1jax.models.transformer import CausalLM, ModelConfig, ValueModel

SCRIPT = textwrap.dedent("""
    import json, traceback
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jax.sharding import PartitionSpec as P
    from r1jax import parallel
    from r1jax.models.transformer import CausalLM, ModelConfig, causal_mask, positions_from_mask
    from r1jax.train.state import create_state, init_models, make_optimizer

    CFG = ModelConfig(vocab_size=128, d_model=64, n_layers=2, n_heads=8, n_kv_heads=2,
                      head_dim=8, mlp_dim=128, qkv_bias=True, tie_embeddings=False)

    def shape_of(mesh):
        return tuple(mesh.shape[a] for a in ("data", "fsdp", "tensor"))

    def check_meshes():
        cases = {(8, 1, 1): (8, 1, 1), (2, 4, 1): (2, 4, 1), (2, 2, 2): (2, 2, 2),
                 (1, 1, 8): (1, 1, 8), (-1, 2, 2): (2, 2, 2), (2, -1, 1): (2, 4, 1),
                 (1, 1, -1): (1, 1, 8), (-1, 1, 1): (8, 1, 1), (1, 1, 1): (1, 1, 1)}
        for args, want in cases.items():
            m = parallel.make_mesh(*args)
            assert shape_of(m) == want, (args, shape_of(m))
            assert m.devices.size == np.prod(want)
            assert m.axis_names == ("data", "fsdp", "tensor")
        assert shape_of(parallel.make_mesh()) == (8, 1, 1)
        assert parallel.make_mesh(2, devices=jax.devices()[:2]).devices.size == 2
        errors = {(3, 1, 1): "mesh.data=3", (16, 1, 1): "mesh.data=16",
                  (-1, 3, 1): "mesh.fsdp=3", (2, 2, 4): "mesh.tensor=4",
                  (-1, -1, 1): "both -1", (0, 1, 1): "mesh.data=0", (1, 1, -2): "mesh.tensor"}
        for args, needle in errors.items():
            try:
                parallel.make_mesh(*args)
            except ValueError as e:
                assert needle in str(e), (args, str(e))
            else:
                raise AssertionError(f"no error for {args}")

    def check_batch():
        assert parallel.batch_sharding(parallel.make_mesh(8, 1, 1)).spec == P("data")
        assert parallel.data_sharded(parallel.make_mesh(8, 1, 1)).spec == P("data")
        m = parallel.make_mesh(2, 4, 1)
        assert parallel.batch_sharding(m).spec == P(("data", "fsdp"))
        assert parallel.batch_sharding(parallel.make_mesh(1, 1, 8)).spec == P(None)
        parallel.check_divisible(16, m, "rl.prompts_per_iter")
        try:
            parallel.check_divisible(4, m, "rl.prompts_per_iter")
        except ValueError as e:
            assert "rl.prompts_per_iter=4" in str(e) and "8 batch shards" in str(e), str(e)
        else:
            raise AssertionError("4 rows passed on 8 batch shards")
        x = jax.device_put(np.zeros((16, 3)), parallel.batch_sharding(m))
        assert x.addressable_shards[0].data.shape == (2, 3)

    def put(params, mesh, rules=None, cfg=CFG):
        sh = parallel.param_shardings(params, mesh, rules, cfg=cfg)
        return jax.device_put(params, sh)

    def spec_and_shard(x):
        return x.sharding.spec, x.addressable_shards[0].data.shape

    def check_param_sharding():
        p = nnx.to_pure_dict(nnx.split(CausalLM(CFG, rngs=nnx.Rngs(0)))[1])
        q = put(p, parallel.make_mesh(2, 2, 2))
        l0 = q["model"]["layers"][0]
        want = {
            "gate": (l0["mlp"]["gate_proj"]["kernel"], P("fsdp", "tensor"), (32, 64)),
            "down": (l0["mlp"]["down_proj"]["kernel"], P("tensor", "fsdp"), (64, 32)),
            "embed": (q["model"]["embed"]["embedding"], P("tensor", "fsdp"), (64, 32)),
            "q": (l0["attn"]["q_proj"]["kernel"], P("fsdp", "tensor"), (32, 32)),
            "q_bias": (l0["attn"]["q_proj"]["bias"], P("tensor"), (32,)),
            "k": (l0["attn"]["k_proj"]["kernel"], P("fsdp", "tensor"), (32, 8)),
            "o": (l0["attn"]["o_proj"]["kernel"], P("tensor", "fsdp"), (32, 32)),
            "norm": (l0["input_norm"]["scale"], P("fsdp"), (32,)),
            "head": (q["lm_head"]["kernel"], P("fsdp", "tensor"), (32, 64)),
        }
        for name, (x, spec, shard) in want.items():
            assert spec_and_shard(x) == (spec, shard), (name, spec_and_shard(x))
            assert len(x.sharding.device_set) == 8
        # tensor=8: two kv heads cannot be split 8 ways, eight q heads can
        t = put(p, parallel.make_mesh(1, 1, 8))["model"]["layers"][0]["attn"]
        assert spec_and_shard(t["k_proj"]["kernel"]) == (P(None, None), (64, 16))
        assert spec_and_shard(t["q_proj"]["kernel"]) == (P(None, "tensor"), (64, 8))
        # vocab 100 is not divisible by 8: replicated on that dimension only
        cfg = ModelConfig(vocab_size=100, d_model=64, n_heads=8, n_kv_heads=2, head_dim=8)
        p2 = nnx.to_pure_dict(nnx.split(CausalLM(cfg, rngs=nnx.Rngs(0)))[1])
        e = put(p2, parallel.make_mesh(1, 8, 1), cfg=cfg)["model"]["embed"]["embedding"]
        assert spec_and_shard(e) == (P(None, "fsdp"), (100, 8))
        e = put(p2, parallel.make_mesh(1, 1, 8), cfg=cfg)["model"]["embed"]["embedding"]
        assert spec_and_shard(e) == (P(None, None), (100, 64))
        # pure data parallel: everything replicated (the foundation's layout)
        d = put(p, parallel.make_mesh(8, 1, 1))
        for x in jax.tree.leaves(d):
            assert x.addressable_shards[0].data.shape == x.shape
        # sampler rules: params gathered over fsdp, still split over tensor
        s = put(p, parallel.make_mesh(2, 2, 2), parallel.sampler_rules())
        assert spec_and_shard(s["model"]["embed"]["embedding"]) == (P("tensor", None), (64, 64))

    def check_state_shardings():
        mesh = parallel.make_mesh(2, 2, 2)
        graphs, pol, val = init_models(CFG, CFG, 0)
        tx = make_optimizer(1e-3, warmup=1, total=10, weight_decay=0.1, grad_clip=1.0)
        mk = lambda p, v: create_state(p, v, tx, tx, seed=0, eps_low=0.2, eps_high=0.28, kl_coef=0.1,
                                       entropy_coef=0.01)
        abstract = jax.eval_shape(mk, pol, val)
        ss = parallel.state_shardings(abstract, mesh, policy_cfg=CFG, value_cfg=CFG)
        is_sh = lambda x: isinstance(x, jax.sharding.NamedSharding)
        assert jax.tree.structure(ss, is_leaf=is_sh) == jax.tree.structure(abstract)
        assert all(is_sh(s) for s in jax.tree.leaves(ss, is_leaf=is_sh))
        psh = parallel.param_shardings(pol, mesh, cfg=CFG)
        vsh = parallel.param_shardings(val, mesh, cfg=CFG)
        adam_p, adam_v = ss.policy_opt[1][0], ss.value_opt[1][0]
        for tree, want in ((adam_p.mu, psh), (adam_p.nu, psh), (ss.ref, psh),
                           (ss.policy, psh), (adam_v.mu, vsh), (adam_v.nu, vsh), (ss.value, vsh)):
            assert jax.tree.leaves(tree) == jax.tree.leaves(want)
        assert any(s.spec != P() for s in jax.tree.leaves(psh))
        for s in (adam_p.count, ss.step, ss.rng, ss.skipped, *jax.tree.leaves(ss.clip)):
            assert s.spec == P(), s
        state = jax.jit(mk, out_shardings=ss)(pol, val)
        got = jax.tree.map(lambda x: x.sharding, state)
        assert jax.tree.leaves(got) == jax.tree.leaves(ss, is_leaf=is_sh)
        mu = state.policy_opt[1][0].mu["model"]["layers"][1]["mlp"]["up_proj"]["kernel"]
        assert spec_and_shard(mu) == (P("fsdp", "tensor"), (32, 64))

    def forward(graphdef):
        def apply(params, tokens, positions, mask):
            return nnx.merge(graphdef, params)(tokens, positions, mask)[0]
        return apply

    def check_forward_numerics():
        g, state = nnx.split(CausalLM(CFG, rngs=nnx.Rngs(0)))
        p = nnx.to_pure_dict(state)
        rng = np.random.default_rng(0)
        tokens = jnp.asarray(rng.integers(0, CFG.vocab_size, (8, 12)), jnp.int32)
        valid = jnp.asarray(np.arange(12)[None] >= rng.integers(0, 4, (8, 1)))
        args = (tokens, positions_from_mask(valid), causal_mask(valid))
        apply = forward(g)
        ref = np.asarray(jax.jit(apply)(p, *args))
        for shape, rules in (((2, 2, 2), None), ((1, 2, 4), None), ((2, 2, 2), "sampler")):
            mesh = parallel.make_mesh(*shape)
            rules = parallel.sampler_rules() if rules else None
            psh = parallel.param_shardings(p, mesh, rules, cfg=CFG)
            bsh = parallel.batch_sharding(mesh)
            fn = jax.jit(apply, in_shardings=(psh, bsh, bsh, bsh))
            out = np.asarray(fn(p, *args))
            err = float(np.max(np.abs(out - ref)))
            assert err <= 1e-5, (shape, rules, err)

    if __name__ == "__main__":
        assert jax.device_count() == 8, jax.devices()
        out = {}
        for name, fn in list(globals().items()):
            if name.startswith("check_"):
                try:
                    fn()
                    out[name] = "ok"
                except Exception:
                    out[name] = traceback.format_exc()
        print(json.dumps(out))
""")

CHECKS = [
    "check_meshes",
    "check_batch",
    "check_param_sharding",
    "check_state_shardings",
    "check_forward_numerics",
]


@pytest.fixture(scope="module")
def eight_device_results(tmp_path_factory):
    script = tmp_path_factory.mktemp("parallel") / "parallel_check.py"
    script.write_text(SCRIPT)
    env = xla_env(devices=8)
    r = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", CHECKS)
def test_on_eight_devices(eight_device_results, name):
    assert eight_device_results.get(name) == "ok", eight_device_results.get(name)


def _pure(module):
    return nnx.to_pure_dict(nnx.split(module)[1])


def test_param_logical_axes_follow_the_model_layout():
    cfg = ModelConfig(qkv_bias=True, tie_embeddings=False)
    axes = parallel.param_logical_axes(_pure(CausalLM(cfg, rngs=nnx.Rngs(0))))
    layer = axes["model"]["layers"][0]
    assert axes["model"]["embed"]["embedding"] == ("vocab", "embed")
    assert layer["attn"]["q_proj"]["kernel"] == ("embed", "heads")
    assert layer["attn"]["k_proj"]["bias"] == ("kv",)
    assert layer["attn"]["o_proj"]["kernel"] == ("heads", "embed")
    assert layer["mlp"]["down_proj"]["kernel"] == ("mlp", "embed")
    assert layer["post_attn_norm"]["scale"] == ("embed",)
    assert axes["lm_head"]["kernel"] == ("embed", "vocab")
    value = parallel.param_logical_axes(_pure(ValueModel(ModelConfig(), rngs=nnx.Rngs(0))))
    assert value["value_head"]["kernel"] == ("embed", None)
    # every axis named by the table has a rule in both rule sets
    names = {a for t in parallel._PARAM_AXES.values() for a in t if a is not None}
    for rules in (parallel.learner_rules(), parallel.sampler_rules()):
        assert names <= {k for k, _ in rules}


def test_unknown_or_reshaped_parameter_raises():
    params = _pure(CausalLM(ModelConfig(), rngs=nnx.Rngs(0)))
    params["model"]["rotary_scale"] = {"weight": np.zeros(4)}
    with pytest.raises(ValueError, match="model/rotary_scale/weight.*_PARAM_AXES"):
        parallel.param_logical_axes(params)
    params = _pure(CausalLM(ModelConfig(), rngs=nnx.Rngs(0)))
    params["model"]["norm"]["scale"] = np.zeros((2, 128))
    with pytest.raises(ValueError, match="shape \\(2, 128\\)"):
        parallel.param_shardings(params, parallel.make_mesh(1))


def test_single_device_mesh_replicates_everything():
    mesh = parallel.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    params = _pure(CausalLM(ModelConfig(), rngs=nnx.Rngs(0)))
    for s in jax.tree.leaves(parallel.param_shardings(params, mesh)):
        assert all(a is None for a in s.spec)
    with pytest.raises(ValueError, match="logical axis 'bogus'"):
        parallel.logical_to_spec(("bogus",), mesh, parallel.learner_rules())
