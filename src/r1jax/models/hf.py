"""Hugging Face Qwen2 / Llama checkpoints <-> `CausalLM`.

`load_pretrained(path)` reads `config.json` and `model.safetensors` (or the shards listed
in `model.safetensors.index.json`) and returns a `CausalLM`. The model is built
abstractly (`nnx.eval_shape`, no random init) and each tensor is read, transposed where
needed (HF Linear weights are [out, in], NNX kernels [in, out]) and placed directly with
its final sharding, one tensor at a time, so a big model is never whole on one device.
With a `mesh` the shardings come from `r1jax.parallel.param_shardings` (learner rules
unless `rules` is given); without one the arrays go to the default device.

`save_pretrained(model, path, family)` writes `config.json` and safetensors shards that
`transformers.AutoModelForCausalLM.from_pretrained` loads; it writes into a temporary
sibling directory and renames it into place, so a failure leaves nothing half-written.

Parameter names: HF `model.embed_tokens` -> `model.embed`, `self_attn` -> `attn`,
`input_layernorm` -> `input_norm`, `post_attention_layernorm` -> `post_attn_norm`; the
rest (`{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`, `model.norm`, `lm_head`) match.
Requires torch only for the tests, never here: safetensors is read with numpy
(bfloat16 through ml_dtypes).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from r1jax.models.transformer import ROPE_SCALING, CausalLM, ModelConfig
from r1jax.parallel import param_shardings

FAMILIES = ("qwen2", "llama")
_ARCH = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}
_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"
# Checkpoint entries that are buffers, not parameters.
_IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


# --------------------------------------------------------------------------- config


def _rope_from_hf(d: dict):
    """(rope_theta, rope_scaling) from a config dict: the transformers v5 layout
    (`rope_parameters`) or the v4 one (`rope_theta` + `rope_scaling`)."""
    params = d.get("rope_parameters") or {}
    theta = d.get("rope_theta", params.get("rope_theta", 10000.0))
    scaling = d.get("rope_scaling") or params
    kind = scaling.get("rope_type", scaling.get("type")) if scaling else None
    if kind in (None, "default"):
        return float(theta), None
    field = "rope_scaling" if d.get("rope_scaling") else "rope_parameters"
    if kind not in ROPE_SCALING:
        raise ValueError(
            f"config.json {field}.rope_type={kind!r} is not supported: supported are "
            f"'default' (no scaling), {', '.join(repr(k) for k in sorted(ROPE_SCALING))}"
        )
    missing = [k for k in ROPE_SCALING[kind] if scaling.get(k) is None]
    if missing:
        raise ValueError(f"config.json {field} (rope_type {kind!r}) lacks {missing}")
    out = {k: float(scaling[k]) for k in ROPE_SCALING[kind]}
    if "original_max_position_embeddings" in out:
        out["original_max_position_embeddings"] = int(out["original_max_position_embeddings"])
    af = scaling.get("attention_factor")
    if af is not None and float(af) != 1.0:
        raise ValueError(f"config.json {field}.attention_factor={af} is not supported (only 1.0)")
    return float(theta), {**out, "rope_type": kind}


def config_from_hf(d: dict, *, dtype: str | None = None) -> ModelConfig:
    """ModelConfig from a Hugging Face `config.json` dict (model_type qwen2 or llama)."""
    family = d.get("model_type")
    if family not in FAMILIES:
        raise ValueError(
            f"config.json model_type={family!r} is not supported: supported are {list(FAMILIES)}"
        )
    act = d.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"config.json hidden_act={act!r} is not supported (only 'silu')")
    if d.get("mlp_bias"):
        raise ValueError("config.json mlp_bias=true is not supported (MLP has no biases)")
    if family == "qwen2":
        qkv_bias = True  # Qwen2 always has q/k/v biases (and none on o_proj)
        if d.get("use_sliding_window"):
            raise ValueError(
                "config.json use_sliding_window=true is not supported (full attention only)"
            )
    else:
        if d.get("attention_bias"):
            raise ValueError(
                "config.json attention_bias=true is not supported for llama (it adds an "
                "o_proj bias; only q/k/v biases exist, as in qwen2)"
            )
        qkv_bias = False
    for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers"):
        if d.get(k) is None:
            raise ValueError(f"config.json lacks {k}")
    heads = int(d["num_attention_heads"])
    theta, scaling = _rope_from_hf(d)
    return ModelConfig(
        vocab_size=int(d["vocab_size"]),
        d_model=int(d["hidden_size"]),
        n_layers=int(d["num_hidden_layers"]),
        n_heads=heads,
        n_kv_heads=int(d.get("num_key_value_heads") or heads),
        head_dim=int(d.get("head_dim") or d["hidden_size"] // heads),
        mlp_dim=int(d["intermediate_size"]),
        rope_theta=theta,
        rope_scaling=scaling,
        rms_eps=float(d.get("rms_norm_eps", 1e-6)),
        qkv_bias=qkv_bias,
        tie_embeddings=bool(d.get("tie_word_embeddings", False)),
        dtype=dtype or "float32",
    )


def config_to_hf(cfg: ModelConfig, family: str = "qwen2", **extra) -> dict:
    """Hugging Face `config.json` dict for `cfg`; `extra` entries are added/override
    (e.g. `max_position_embeddings`, `bos_token_id`, `eos_token_id`).

    Written in both the transformers v4 layout (`rope_theta`, `rope_scaling`) and the v5
    one (`rope_parameters`). A qwen2 export of a model without q/k/v biases writes zero
    biases (`save_pretrained`); llama cannot express q/k/v biases without an o_proj bias.
    """
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not supported: use one of {list(FAMILIES)}")
    if family == "llama" and cfg.qkv_bias:
        raise ValueError(
            "a model with q/k/v biases cannot be saved as llama (llama's attention_bias "
            "also adds an o_proj bias): use family='qwen2'"
        )
    scaling = dict(cfg.rope_scaling) if cfg.rope_scaling else None
    max_pos = 32768 if family == "qwen2" else 4096
    if scaling and "original_max_position_embeddings" in scaling:
        max_pos = int(scaling["original_max_position_embeddings"] * scaling["factor"])
    d = {
        "architectures": [_ARCH[family]],
        "model_type": family,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.mlp_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.rms_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": scaling,
        "rope_parameters": {
            "rope_type": "default",
            **(scaling or {}),
            "rope_theta": cfg.rope_theta,
        },
        "tie_word_embeddings": cfg.tie_embeddings,
        "max_position_embeddings": max_pos,
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "use_cache": True,
    }
    if family == "qwen2":
        d.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.n_layers)
    else:
        d.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    d.update(extra)
    return d


# --------------------------------------------------------------------------- names


def _hf_name(path: tuple) -> tuple[str, bool]:
    """(HF tensor name, transpose?) for a pure-dict parameter path of CausalLM."""
    parts = [str(p) for p in path]
    leaf = parts[-1]
    mod = ".".join(parts[:-1])
    if mod == "model.embed":
        mod = "model.embed_tokens"
    mod = re.sub(r"\.attn\.", ".self_attn.", mod)
    mod = re.sub(r"\.input_norm$", ".input_layernorm", mod)
    mod = re.sub(r"\.post_attn_norm$", ".post_attention_layernorm", mod)
    if leaf == "kernel":
        return f"{mod}.weight", True
    if leaf in ("embedding", "scale"):
        return f"{mod}.weight", False
    if leaf == "bias":
        return f"{mod}.bias", False
    raise ValueError(f"no Hugging Face name for parameter {'/'.join(parts)}")


def _key_name(k):
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return k


def _leaves(pure) -> list:
    """[(path tuple, leaf)] of a pure dict, in tree order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(pure)
    return [(tuple(_key_name(k) for k in p), leaf) for p, leaf in flat]


def _set(tree: dict, path: tuple, value):
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


# --------------------------------------------------------------------------- loading


class _Reader:
    """Tensor name -> file over a single file or an index of shards (opened lazily)."""

    def __init__(self, path: str):
        from safetensors import safe_open

        self.path = path
        self._open = lambda f: safe_open(os.path.join(path, f), framework="numpy")
        index = os.path.join(path, _INDEX)
        if os.path.exists(index):
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
            absent = sorted(
                {f for f in weight_map.values() if not os.path.exists(os.path.join(path, f))}
            )
            if absent:
                raise FileNotFoundError(f"{index} lists missing shard files {absent}")
            self.files = dict(weight_map)
        elif os.path.exists(os.path.join(path, _SINGLE)):
            with self._open(_SINGLE) as f:
                self.files = {k: _SINGLE for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        else:
            raise FileNotFoundError(
                f"{path} has neither {_SINGLE} nor {_INDEX} (only safetensors checkpoints "
                "are supported)"
            )
        self._handles: dict = {}

    def get(self, name: str) -> np.ndarray:
        fn = self.files[name]
        if fn not in self._handles:
            self._handles[fn] = self._open(fn).__enter__()
        h = self._handles[fn]
        try:
            return h.get_tensor(name)
        except TypeError:  # older safetensors: bfloat16 not understood by numpy
            if h.get_slice(name).get_dtype() != "BF16":
                raise
            return _read_raw_bf16(os.path.join(self.path, fn), name)

    def close(self):
        for h in self._handles.values():
            h.__exit__(None, None, None)
        self._handles.clear()


def _read_raw_bf16(file: str, name: str) -> np.ndarray:  # pragma: no cover - old safetensors
    with open(file, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        meta = header[name]
        start, end = meta["data_offsets"]
        f.seek(8 + n + start)
        buf = f.read(end - start)
    return np.frombuffer(buf, ml_dtypes.bfloat16).reshape(meta["shape"])


def _limited(names, n=10) -> str:
    names = sorted(names)
    more = f" (+{len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def load_pretrained_params(path, *, dtype=None, param_dtype=None, mesh=None, rules=None):
    """(ModelConfig, pure-dict params of CausalLM) from a Hugging Face checkpoint dir.

    `dtype`: compute dtype of the model (`ModelConfig.dtype`, default float32).
    `param_dtype`: storage dtype of the parameters (default the model's own, float32).
    `mesh`/`rules`: place each tensor with `r1jax.parallel.param_shardings` (default
    rules: `learner_rules()`); without a mesh, on the default device.
    """
    cfg, _, params = _load(path, dtype, param_dtype, mesh, rules)
    return cfg, params


def load_config(path, *, dtype=None) -> ModelConfig:
    """The ModelConfig of a Hugging Face checkpoint directory (its `config.json`)."""
    path = os.fspath(path)
    cfg_file = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_file):
        raise FileNotFoundError(f"{path} is not a Hugging Face checkpoint: no config.json")
    with open(cfg_file) as f:
        return config_from_hf(json.load(f), dtype=None if dtype is None else jnp.dtype(dtype).name)


def _load(path, dtype, param_dtype, mesh, rules):
    path = os.fspath(path)
    cfg = load_config(path, dtype=dtype)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0))))
    abstract = nnx.to_pure_dict(state)
    leaves = _leaves(abstract)
    shardings = None
    if mesh is not None:
        shardings = dict(_leaves(param_shardings(abstract, mesh, rules, cfg=cfg)))
    expected = {}
    for p, leaf in leaves:
        name, transpose = _hf_name(p)
        expected[name] = (p, transpose, leaf)

    reader = _Reader(path)
    present = set(reader.files)
    ignored = {n for n in present if _IGNORED.search(n)}
    if cfg.tie_embeddings:
        ignored |= present & {"lm_head.weight"}  # some tied checkpoints store a copy
    missing = set(expected) - present
    unexpected = present - set(expected) - ignored
    if missing or unexpected:
        msg = [f"checkpoint {path} does not match the model of its config.json:"]
        if missing:
            msg.append(f"missing tensors: {_limited(missing)}")
        if unexpected:
            msg.append(f"unexpected tensors: {_limited(unexpected)}")
        raise ValueError(" ".join(msg))

    params: dict = {}
    try:
        for name, (p, transpose, leaf) in expected.items():
            raw = reader.get(name)
            arr = raw.T if transpose else raw
            if tuple(arr.shape) != tuple(leaf.shape):
                raise ValueError(
                    f"tensor {name} has shape {tuple(raw.shape)}, the model of config.json "
                    f"needs {tuple(leaf.shape)[::-1] if transpose else tuple(leaf.shape)}"
                )
            dt = leaf.dtype if param_dtype is None else jnp.dtype(param_dtype)
            arr = np.ascontiguousarray(arr, dtype=dt)
            if shardings is None:
                out = jax.device_put(arr)
            else:
                out = jax.make_array_from_callback(arr.shape, shardings[p], lambda i, a=arr: a[i])
            _set(params, p, out)
            del raw, arr
    finally:
        reader.close()
    return cfg, graphdef, params


def load_pretrained(path, *, dtype=None, param_dtype=None, mesh=None, rules=None) -> CausalLM:
    """A `CausalLM` with the weights of a Hugging Face Qwen2/Llama checkpoint directory.

    See `load_pretrained_params` for the arguments. The model is called as
    `model(tokens)` -> logits or with positions/mask/cache like any `CausalLM`.
    """
    _, graphdef, params = _load(path, dtype, param_dtype, mesh, rules)
    return nnx.merge(graphdef, params)


# --------------------------------------------------------------------------- saving


def _size_bytes(s) -> int:
    if isinstance(s, int):
        return s
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B)\s*", str(s), re.IGNORECASE)
    if not m:
        raise ValueError(f"max_shard_size={s!r}: use bytes or e.g. '5GB', '500MB'")
    unit = m.group(2).upper()
    base = 1024 if "I" in unit else 1000
    return int(float(m.group(1)) * base ** {"K": 1, "M": 2, "G": 3}[unit[0]])


# Files save_pretrained owns: replaced, never carried over from an existing directory.
_CKPT_FILE = re.compile(
    r"config\.json|generation_config\.json|model(-\d+-of-\d+)?\.safetensors|"
    r"model\.safetensors\.index\.json"
)
_ST_DTYPE = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def save_pretrained(model, path, family: str = "qwen2", *, max_shard_size="5GB", config_extra=None):
    """Writes `model` (a CausalLM, or `(ModelConfig, params pure dict)`) as a Hugging
    Face checkpoint: config.json, generation_config.json and safetensors (sharded with
    an index when larger than `max_shard_size`). `config_extra`: extra config.json
    entries (e.g. `eos_token_id`). Parameters are gathered to the host one at a time.
    """
    from safetensors.numpy import save_file

    if isinstance(model, tuple):
        cfg, params = model
    else:
        cfg, params = model.cfg, nnx.to_pure_dict(nnx.state(model, nnx.Param))
    hf_cfg = config_to_hf(cfg, family, **(config_extra or {}))
    leaves = _leaves(params)
    dtypes = {str(np.dtype(leaf.dtype)) for _, leaf in leaves}
    hf_cfg["torch_dtype"] = hf_cfg["dtype"] = _ST_DTYPE.get(
        dtypes.pop() if len(dtypes) == 1 else "float32", "float32"
    )
    tensors = []  # (HF name, param path or None for a zero bias, transpose, leaf)
    for p, leaf in leaves:
        name, transpose = _hf_name(p)
        tensors.append((name, p, transpose, leaf))
    if family == "qwen2" and not cfg.qkv_bias:  # qwen2 always has q/k/v biases: zeros
        for i in range(cfg.n_layers):
            for proj, n in (("q", cfg.n_heads), ("k", cfg.n_kv_heads), ("v", cfg.n_kv_heads)):
                tensors.append(
                    (f"model.layers.{i}.self_attn.{proj}_proj.bias", None, False, n * cfg.head_dim)
                )

    def host(p, transpose, leaf):
        if p is None:  # zero bias of width `leaf`
            return np.zeros((leaf,), jnp.dtype(hf_cfg["dtype"]))
        a = np.asarray(jax.device_get(leaf))
        return np.ascontiguousarray(a.T if transpose else a)

    def nbytes(leaf):
        if isinstance(leaf, int):
            return 4 * leaf
        return math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize

    limit = _size_bytes(max_shard_size)
    shards, cur, cur_size = [], [], 0
    for t in tensors:
        n = nbytes(t[3])
        if cur and cur_size + n > limit:
            shards.append(cur)
            cur, cur_size = [], 0
        cur.append(t)
        cur_size += n
    shards.append(cur)

    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the checkpoint should not be
        weight_map, total = {}, 0
        for k, shard in enumerate(shards):
            fn = (
                _SINGLE
                if len(shards) == 1
                else f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
            )
            arrays = {name: host(p, tr, leaf) for name, p, tr, leaf in shard}
            total += sum(a.nbytes for a in arrays.values())
            save_file(arrays, os.path.join(tmp, fn), metadata={"format": "pt"})
            weight_map.update({name: fn for name in arrays})
            del arrays
        if len(shards) > 1:
            with open(os.path.join(tmp, _INDEX), "w") as f:
                json.dump(
                    {"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2
                )
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(hf_cfg, f, indent=2, sort_keys=True)
        gen = {
            k: hf_cfg[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in hf_cfg
        }
        with open(os.path.join(tmp, "generation_config.json"), "w") as f:
            json.dump(gen, f, indent=2)
        if os.path.exists(path):  # keep its other files (tokenizer, ...), then swap
            for e in os.listdir(path):
                if e in os.listdir(tmp) or _CKPT_FILE.fullmatch(e):
                    continue
                src, dst = os.path.join(path, e), os.path.join(tmp, e)
                (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, dst)
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
            os.rename(path, os.path.join(old, "x"))
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(os.path.join(old, "x"), path)
                os.rmdir(old)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def positions_warning(
    checkpoint_dir, longest: int, max_new_tokens: int, flag: str = "--max_new_tokens"
) -> str | None:
    """A warning when the longest prompt plus `max_new_tokens` passes the checkpoint's
    `max_position_embeddings` (its config.json); None otherwise. Not an error: these are
    RoPE models (positions count from each prompt's first token, not the padding), which
    compute any position, but past the ones the model was trained on its output degrades.
    `flag`: how the message spells the setting that fixes it."""
    try:
        with open(os.path.join(checkpoint_dir, "config.json")) as f:
            limit = json.load(f).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(limit, int) or isinstance(limit, bool) or longest + max_new_tokens <= limit:
        return None
    if longest >= limit:
        return (
            f"the longest prompt ({longest} tokens) alone reaches the checkpoint's "
            f"max_position_embeddings ({limit}): the model was not trained on the positions "
            "of any answer to it; use shorter prompts (or a checkpoint with more positions)"
        )
    return (
        f"the longest prompt ({longest} tokens) plus max_new_tokens={max_new_tokens} passes "
        f"the checkpoint's max_position_embeddings ({limit}): the model was not trained on "
        f"those positions; pass {flag}={limit - longest} to stay within them"
    )


__all__ = [
    "FAMILIES",
    "config_from_hf",
    "config_to_hf",
    "load_config",
    "load_pretrained",
    "load_pretrained_params",
    "positions_warning",
    "save_pretrained",
]
