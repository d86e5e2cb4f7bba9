"""Hugging Face checkpoints: tiny random Qwen2/Llama models written by `transformers`
load with equal logits and greedy generations; save_pretrained loads back in
`transformers`; sharded, bf16 and broken checkpoints."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from r1jax.models import ModelConfig, load_pretrained, save_pretrained
from r1jax.models.hf import config_from_hf, config_to_hf
from r1jax.sampling import generate

V = 300
COMMON = {
    "vocab_size": V,
    "hidden_size": 96,
    "intermediate_size": 200,
    "num_hidden_layers": 2,
    "num_attention_heads": 6,
    "max_position_embeddings": 256,
}
LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}
SPECS = {
    "qwen2": ("qwen2", {"num_key_value_heads": 2, "tie_word_embeddings": False}),
    "llama": ("llama", {"num_key_value_heads": 3, "rope_theta": 5e5, "tie_word_embeddings": True}),
    "llama3": (
        "llama",
        {
            "num_key_value_heads": 3,
            "rope_theta": 5e5,
            "tie_word_embeddings": True,
            "rope_scaling": LLAMA3,  # copied in _hf_model: transformers edits it in place
        },
    ),
}


def _hf_model(name, seed=0):
    family, kw = SPECS[name]
    kw = {k: dict(v) if isinstance(v, dict) else v for k, v in kw.items()}
    torch.manual_seed(seed)
    if family == "qwen2":
        m = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**COMMON, **kw))
    else:
        m = transformers.LlamaForCausalLM(transformers.LlamaConfig(**COMMON, **kw))
    if family == "qwen2":  # random (not zero) q/k/v biases, so a wrong bias shows up
        with torch.no_grad():
            for layer in m.model.layers:
                for p in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    p.bias.normal_(0, 0.5)
    return m.eval()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for name in SPECS:
        m = _hf_model(name)
        m.save_pretrained(root / name)
        out[name] = (m, str(root / name))
    return out


_fwd = jax.jit(lambda model, tok: model(tok))  # `model(tok)`, compiled once per config


def _tokens(b=2, t=40, seed=1):
    return np.random.default_rng(seed).integers(0, V, (b, t)).astype(np.int32)


def _hf_logits(m, tok, attention_mask=None):
    with torch.no_grad():
        am = None if attention_mask is None else torch.tensor(attention_mask, dtype=torch.long)
        return m(torch.tensor(tok, dtype=torch.long), attention_mask=am).logits.float().numpy()


def _rel_err(ours, ref):
    assert ours.shape == ref.shape
    return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("name", list(SPECS))
def test_logits_match_transformers(ckpts, name):
    hf, path = ckpts[name]
    model = load_pretrained(path)
    assert model.cfg.tie_embeddings == (name != "qwen2")
    assert hasattr(model, "lm_head") == (name == "qwen2")
    tok = _tokens()
    assert _rel_err(_fwd(model, tok), _hf_logits(hf, tok)) <= 1e-4


@pytest.mark.parametrize("name", ["qwen2", "llama"])
def test_greedy_generation_matches_transformers(ckpts, name):
    """32 greedy tokens, with a left-padded row (positions restart at its first token)."""
    hf, path = ckpts[name]
    model = load_pretrained(path)
    prompt = _tokens(2, 12, seed=2)
    mask = np.ones_like(prompt, bool)
    prompt[1, :4], mask[1, :4] = 0, False
    gen_cfg = transformers.GenerationConfig(
        max_new_tokens=32, do_sample=False, eos_token_id=None, bos_token_id=None, pad_token_id=0
    )
    with torch.no_grad():
        ref = hf.generate(
            torch.tensor(prompt, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            generation_config=gen_cfg,
        )[:, prompt.shape[1] :].numpy()
    run = jax.jit(
        lambda m, p, k: generate(
            m, p, mask, k, max_new_tokens=32, temperature=0.0, eos_id=-1, pad_id=0
        )
    )
    ours = run(model, prompt, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(ours.tokens_bt), ref)


def test_config_round_trip_and_rope_scaling_fields(ckpts):
    with open(os.path.join(ckpts["llama3"][1], "config.json")) as f:
        d = json.load(f)
    cfg = config_from_hf(d)
    assert dict(cfg.rope_scaling) == LLAMA3
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.rope_theta) == (6, 3, 16, 500000.0)
    back = config_from_hf(config_to_hf(cfg, "llama"))
    assert back == cfg
    # transformers v4 layout: top-level rope_theta + rope_scaling with "type".
    v4 = {k: v for k, v in d.items() if k != "rope_parameters"}
    v4.update(rope_theta=1e6, rope_scaling={"type": "linear", "factor": 2.0})
    cfg4 = config_from_hf(v4)
    assert cfg4.rope_theta == 1e6 and dict(cfg4.rope_scaling) == {
        "rope_type": "linear",
        "factor": 2.0,
    }
    assert config_from_hf({**v4, "num_key_value_heads": None, "head_dim": None}).n_kv_heads == 6


def test_model_config_rope_scaling_is_validated_and_hashable():
    cfg = ModelConfig(rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert cfg.rope_scaling == (("factor", 2.0), ("rope_type", "linear")) and hash(cfg)
    with pytest.raises(ValueError, match="rope_type='yarn' is unsupported.*llama3"):
        ModelConfig(rope_scaling={"rope_type": "yarn", "factor": 2.0})
    with pytest.raises(ValueError, match="lacks"):
        ModelConfig(rope_scaling={"rope_type": "llama3", "factor": 2.0})


def test_linear_rope_scaling_matches_transformers(tmp_path):
    torch.manual_seed(3)
    cfg = transformers.LlamaConfig(
        **COMMON, num_key_value_heads=2, rope_scaling={"rope_type": "linear", "factor": 4.0}
    )
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path)
    tok = _tokens()
    assert _rel_err(_fwd(load_pretrained(tmp_path), tok), _hf_logits(hf, tok)) <= 1e-4


@pytest.mark.parametrize("name", ["qwen2", "llama"])
def test_save_pretrained_loads_back_in_transformers(ckpts, name, tmp_path):
    hf, path = ckpts[name]
    family = SPECS[name][0]
    model = load_pretrained(path)
    out = tmp_path / "export"
    out.mkdir()
    (out / "tokenizer.json").write_text("{}")  # other files in the directory survive
    save_pretrained(model, out, family=family)
    assert (out / "tokenizer.json").read_text() == "{}"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp dirs left
    back = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(back).__name__ == type(hf).__name__
    tok = _tokens(seed=5)
    ref = _hf_logits(hf, tok)
    assert _rel_err(_hf_logits(back, tok), ref) <= 1e-6
    assert _rel_err(_fwd(load_pretrained(out), tok), ref) <= 1e-4


def test_llama_model_saved_as_qwen2_gets_zero_biases(ckpts, tmp_path):
    hf, path = ckpts["llama"]
    save_pretrained(load_pretrained(path), tmp_path / "q", family="qwen2")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "q").eval()
    assert type(back).__name__ == "Qwen2ForCausalLM"
    tok = _tokens()
    assert _rel_err(_hf_logits(back, tok), _hf_logits(hf, tok)) <= 1e-4
    with pytest.raises(ValueError, match="family='qwen2'"):
        save_pretrained(load_pretrained(ckpts["qwen2"][1]), tmp_path / "l", family="llama")
    assert not (tmp_path / "l").exists()


def test_sharded_checkpoints_load_and_save(ckpts, tmp_path):
    hf, _ = ckpts["qwen2"]
    hf.save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    shards = [f for f in os.listdir(tmp_path / "hf") if f.endswith(".safetensors")]
    assert len(shards) > 2 and (tmp_path / "hf" / "model.safetensors.index.json").exists()
    model = load_pretrained(tmp_path / "hf")
    tok = _tokens()
    ref = _hf_logits(hf, tok)
    assert _rel_err(_fwd(model, tok), ref) <= 1e-4
    save_pretrained(model, tmp_path / "ours", family="qwen2", max_shard_size="100KB")
    ours = [f for f in os.listdir(tmp_path / "ours") if f.endswith(".safetensors")]
    assert len(ours) > 2
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert _rel_err(_hf_logits(back, tok), ref) <= 1e-6


def test_bf16_checkpoint_loads(ckpts, tmp_path):
    hf = _hf_model("qwen2").to(torch.bfloat16)
    hf.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path)
    assert model.model.embed.embedding.dtype == np.float32  # float32 master weights
    tok = _tokens()
    ref = _hf_logits(hf.float(), tok)  # the same bf16-rounded weights, in float32
    assert _rel_err(_fwd(model, tok), ref) <= 1e-4
    half = load_pretrained(tmp_path, param_dtype="bfloat16", dtype="bfloat16")
    assert half.model.embed.embedding.dtype == jax.numpy.bfloat16
    assert half.cfg.dtype == "bfloat16"
    assert _rel_err(_fwd(half, tok), ref) <= 5e-2


def test_errors_name_the_problem(ckpts, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path)
    _, path = ckpts["llama"]
    bad = tmp_path / "bad"
    bad.mkdir()
    with open(os.path.join(path, "config.json")) as f:
        d = json.load(f)
    (bad / "config.json").write_text(json.dumps(d))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_pretrained(bad)
    from safetensors.numpy import load_file

    tensors = load_file(os.path.join(path, "model.safetensors"))
    drop = "model.layers.1.mlp.up_proj.weight"
    extra = {"model.layers.0.self_attn.rotary_emb.inv_freq": np.zeros(8, np.float32)}
    kept = {k: v for k, v in tensors.items() if k != drop}
    safetensors_numpy.save_file({**kept, **extra}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match=f"missing tensors: {drop}"):
        load_pretrained(bad)
    safetensors_numpy.save_file(
        {**tensors, **extra, "model.layers.0.mlp.extra.weight": np.zeros(2, np.float32)},
        str(bad / "model.safetensors"),
    )
    with pytest.raises(ValueError, match=r"unexpected tensors: model\.layers\.0\.mlp\.extra"):
        load_pretrained(bad)
    wrong = dict(tensors, **{"model.norm.weight": np.zeros(5, np.float32)})
    safetensors_numpy.save_file(wrong, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model\.norm\.weight has shape \(5,\)"):
        load_pretrained(bad)
    for change, match in [
        ({"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "rope_type='yarn'.*llama3"),
        ({"model_type": "gpt2"}, "model_type='gpt2'.*qwen2"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"attention_bias": True}, "attention_bias"),
        ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0}}, "lacks"),
    ]:
        with pytest.raises(ValueError, match=match):
            config_from_hf({**d, **change})


def test_load_with_mesh_shards_each_tensor(ckpts, tmp_path):
    """In a subprocess with 4 CPU devices: fsdp=2 × tensor=2 placement, same logits."""
    hf, path = ckpts["qwen2"]
    tok = _tokens()
    np.save(tmp_path / "tok.npy", tok)
    np.save(tmp_path / "ref.npy", _hf_logits(hf, tok))
    code = textwrap.dedent(
        f"""
        import os
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
        )
        os.environ["JAX_PLATFORMS"] = "cpu"
        import jax
        import numpy as np
        from r1jax.models import load_pretrained
        from r1jax.parallel import make_mesh
        mesh = make_mesh(data=1, fsdp=2, tensor=2)
        m = load_pretrained({path!r}, mesh=mesh)
        q = m.model.layers[0].attn.q_proj.kernel.value
        assert tuple(q.sharding.spec) == ("fsdp", "tensor"), q.sharding.spec
        assert len(q.addressable_shards) == 4 and q.addressable_shards[0].data.shape == (48, 48)
        tok = np.load({str(tmp_path / "tok.npy")!r})
        ref = np.load({str(tmp_path / "ref.npy")!r})
        out = jax.jit(lambda m, t: m(t))(m, tok)
        err = np.abs(np.asarray(out) - ref).max() / np.abs(ref).max()
        assert err <= 1e-4, err
        print("OK")
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
