"""LoRA adapters as pure functions over parameter pytrees (`nnx.to_pure_dict`).

A LoRA adapter replaces a projection kernel W [in, out] (an `nnx.Linear`, `y = x @ W`)
by W + scale · (a @ b), with a [in, r], b [r, out] and scale = alpha / r (Hu et al.
2021; the `peft` convention). Only a and b are trained; the base parameters stay frozen.

The adapters live in their own pure dict with the nesting of the params, holding at each
adapted module's path a dict {"a", "b"} (and nothing else):

    lora["model"]["layers"][0]["attn"]["q_proj"] == {"a": [in, r], "b": [r, out]}

so optax, Orbax and sharding see ordinary arrays, and a training step differentiates
`loss(apply_lora(params, lora, cfg))` with respect to `lora` alone:

    cfg = LoraConfig(rank=8, alpha=16.0)                  # attention projections
    lora = init_lora(params, cfg, key)                    # b = 0: adapted == base
    logits = nnx.merge(graphdef, apply_lora(params, lora, cfg))(tokens)
    grads = jax.grad(lambda l: loss(apply_lora(params, l, cfg)))(lora)

API:
  LoraConfig(rank, alpha, targets=("q_proj", "k_proj", "v_proj", "o_proj"))
      `targets` names the modules to adapt, matched against the parent key of each
      `kernel` leaf; `"all"` (alone or in the tuple) means the seven projections
      `LORA_TARGETS` of the Qwen2/Llama block. Invalid values raise ValueError.
  init_lora(params, cfg, key) -> lora
      a ~ U(-1/√in, 1/√in) (peft's default, `kaiming_uniform(a=√5)` on its [r, in]
      lora_A), b = 0, both float32. Each module's key is `fold_in(key, crc32(path))`,
      so an adapter depends only on the key and its path: not on dict order, nor on
      which other modules are targeted. Pure jnp: works under `jax.jit`/`eval_shape`.
  apply_lora(params, lora, cfg) -> params
      a new params tree with each adapted kernel W replaced by W + scale · (a @ b),
      computed in float32 (full-precision matmul) and cast to W's dtype. Untouched
      subtrees and leaves are the same objects. Differentiable in `lora` (and `params`).
      Merging for export is this function: save the tree it returns.
  lora_param_count(lora) -> int
      number of trainable adapter parameters (works on arrays or ShapeDtypeStructs).
  lora_shardings(lora, param_shardings) -> shardings
      NamedShardings for the adapter tree from the params' (e.g.
      `r1jax.parallel.param_shardings`): a takes the kernel's input-dimension axes
      (replicated over r), b its output-dimension axes.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

ATTN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
LORA_TARGETS = ATTN_TARGETS + MLP_TARGETS  # every projection of a decoder block


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    rank: int  # r, inner dimension of a @ b
    alpha: float  # scale = alpha / rank
    # Module names to adapt (parent key of a `kernel` leaf); "all" = LORA_TARGETS.
    targets: tuple[str, ...] = ATTN_TARGETS

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
            raise ValueError(f"lora.rank must be a positive int, got {self.rank!r}")
        if not math.isfinite(float(self.alpha)):
            raise ValueError(f"lora.alpha must be a finite number, got {self.alpha!r}")
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        if not targets:
            raise ValueError(f"lora.targets is empty: name some of {list(LORA_TARGETS)} or 'all'")
        unknown = [t for t in targets if t != "all" and t not in LORA_TARGETS]
        if unknown:
            raise ValueError(
                f"lora.targets has unknown module names {unknown}: use 'all' or names "
                f"from {list(LORA_TARGETS)}"
            )
        expanded = []
        for t in targets:
            for name in LORA_TARGETS if t == "all" else (t,):
                if name not in expanded:
                    expanded.append(name)
        object.__setattr__(self, "targets", tuple(expanded))

    @property
    def scale(self) -> float:
        return float(self.alpha) / self.rank


def _is_adapter(node) -> bool:
    return (
        isinstance(node, Mapping)
        and set(node) == {"a", "b"}
        and not isinstance(node["a"], Mapping)
        and not isinstance(node["b"], Mapping)
    )


def _targeted_kernels(params, targets, path=()):
    """Yields (path, kernel) for every `{name: {"kernel": W}}` with name in targets."""
    for k, v in params.items():
        if not isinstance(v, Mapping):
            continue
        if k in targets and "kernel" in v and not isinstance(v["kernel"], Mapping):
            yield path + (k,), v["kernel"]
        else:
            yield from _targeted_kernels(v, targets, path + (k,))


def _path_str(path) -> str:
    return "/".join(map(str, path))


def init_lora(params, cfg: LoraConfig, key: jax.Array):
    """Adapter tree {path: {"a": [in, r], "b": [r, out]}} for the targeted kernels."""
    found = sorted(_targeted_kernels(params, cfg.targets), key=lambda pk: _path_str(pk[0]))
    if not found:
        raise ValueError(
            f"lora.targets {list(cfg.targets)} matched no kernel in the params: the tree "
            "has no module of those names holding a 'kernel' (check the model / targets)"
        )
    lora: dict = {}
    for path, kernel in found:
        if len(kernel.shape) != 2:
            raise ValueError(
                f"lora target {_path_str(path)} has kernel shape {tuple(kernel.shape)}; "
                "only 2-D [in, out] kernels can be adapted"
            )
        d_in, d_out = kernel.shape
        k = jax.random.fold_in(key, zlib.crc32(_path_str(path).encode()) & 0x7FFFFFFF)
        bound = 1.0 / math.sqrt(d_in)
        a = jax.random.uniform(k, (d_in, cfg.rank), jnp.float32, -bound, bound)
        b = jnp.zeros((cfg.rank, d_out), jnp.float32)
        node = lora
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = {"a": a, "b": b}
    return lora


def _apply(p, l, scale, rank, path):
    if not isinstance(p, Mapping):
        raise TypeError(f"lora path {_path_str(path)} is a leaf in the params, not a module")
    if _is_adapter(l):
        if "kernel" not in p:
            raise ValueError(f"lora adapter at {_path_str(path)} has no 'kernel' in the params")
        w, a, b = p["kernel"], l["a"], l["b"]
        if a.shape != (w.shape[0], rank) or b.shape != (rank, w.shape[1]):
            raise ValueError(
                f"lora adapter at {_path_str(path)} has a {tuple(a.shape)}, b "
                f"{tuple(b.shape)}; kernel {tuple(w.shape)} with rank {rank} needs a "
                f"{(w.shape[0], rank)}, b {(rank, w.shape[1])} (was the adapter made with "
                "this LoraConfig?)"
            )
        delta = jnp.matmul(
            a.astype(jnp.float32), b.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST
        )
        out = dict(p)
        out["kernel"] = (w.astype(jnp.float32) + scale * delta).astype(w.dtype)
        return out
    out = dict(p)
    for k, sub in l.items():
        if k not in p:
            raise ValueError(f"lora path {_path_str(path + (k,))} is not in the params")
        out[k] = _apply(p[k], sub, scale, rank, path + (k,))
    return out


def apply_lora(params, lora, cfg: LoraConfig):
    """params with every adapted kernel W replaced by W + scale · (a @ b)."""
    return _apply(params, lora, cfg.scale, cfg.rank, ())


def lora_param_count(lora) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(lora))


def lora_shardings(lora, param_shardings):
    """Shardings for `lora` from the params' NamedShardings: a [in, r] is split like the
    kernel's first dimension, b [r, out] like its second; r is replicated."""

    def walk(l, s):
        if _is_adapter(l):
            ks = s["kernel"]
            spec = tuple(ks.spec) + (None,) * (2 - len(ks.spec))
            return {
                "a": NamedSharding(ks.mesh, P(spec[0], None)),
                "b": NamedSharding(ks.mesh, P(None, spec[1])),
            }
        return {k: walk(sub, s[k]) for k, sub in l.items()}

    return walk(lora, param_shardings)
