"""Progressive neural networks (Rusu et al. 2016, arXiv:1606.04671) for continual learning.

A `ProgressiveLM` holds `n_columns` decoder columns, one per task, each a full copy of
the Qwen2/Llama decoder of `models.transformer` (own embedding, `Block`s, final norm and
tied LM head). Task k is learned by column k alone; the columns of the earlier tasks
are frozen, so what they learned cannot be forgotten (no catastrophic forgetting by
construction), and column k reuses their features through *lateral connections*:

    x_{k,l} = x'_{k,l} + Σ_{j<k} U_{k,j,l}( stop_gradient(x_{j,l}) ),   l = 0..L

where x'_{k,l} is column k's residual stream at the input of its layer l (its embedding
for l = 0, block l-1's output after), x_{j,l} is column j's stream at the same point
(after its own laterals, i.e. exactly what its block l reads) and U_{k,j,l} a bias-free
`nnx.Linear(D, D)` initialised to zero. The last lateral (l = L) acts on the final
hidden state, before the final norm. With U = 0 a new column starts as an independent
network (its logits equal a `CausalLM` on its own weights) and learns what to take from
its elders. Column 0 has no laterals: its params are exactly a `CausalLM`'s
(`{"model": params["model"]["columns"][0]}` merges into a `CausalLM` graphdef), so a
pretrained checkpoint can seed it.

The task id `column` is static (a graphdef attribute): the forward runs columns
0..column and returns column `column`'s logits; later columns are not run. All
`n_columns` columns exist from construction, so the params pytree has the same
structure for every `column`: one pure dict serves every task's graphdef
(`progressive_graphdef(cfg, n, k)` merges with `init_progressive_params(cfg, n, seed)`).
The laterals into column k live inside column k:

    params["model"]["columns"][k]                       # embed, layers, norm: as Decoder
    params["model"]["columns"][k]["laterals"][j][l]     # U_{k,j,l} {"kernel": [D, D]}

Freezing. `column_labels(params, k)` labels column k's subtree (its own weights and the
laterals into it) "train" and everything else "frozen" (earlier columns, and later,
still unused ones). A training step for task k splits the params,
`train, frozen = split_trainable(params, k)`, differentiates and optimises `train`
only (the optimizer state covers `train` alone, so weight decay never sees a frozen
leaf) and rebuilds the tree with `merge_trainable(train, frozen)`: the frozen leaves
are the very same arrays, bit-identical by construction, however many steps run. (An
`optax.multi_transform` with zero updates on "frozen" leaves is *not* exactly that:
`x + 0.0` turns a -0.0 into +0.0.) The `stop_gradient` on the lateral inputs makes the
same guarantee for a caller that differentiates the whole tree: no gradient reaches an
elder column through a lateral.

Cost. Column k costs one decoder (P_col parameters, a `CausalLM`'s count) plus its
laterals from the k earlier columns, k · (L + 1) · D² parameters; a model that has
learned tasks 0..K costs `param_count(params, K)` = (K+1) · P_col + K(K+1)/2 · (L+1) · D²
(quadratic in the number of tasks, as in the paper), and a forward pass of task K runs
K+1 columns.

Sampling. `ProgressiveLM` duck-types `CausalLM` for `sampling.generate` (and so
`evaluate.make_decoder(progressive_graphdef(cfg, n, k), ...)`): `model.cfg` is the
per-column config with `n_layers = (column + 1) · L`, the number of KV-cache buffers
(`init_cache(model.cfg, ...)`); buffer `j·L + l` is column j's layer l (the
`KVCache` layout of transformer.py). `model.model` is a `ProgressiveDecoder`,
`(tokens, positions, mask, cache, cache_index) -> (normed hidden of the active column,
cache)`, whose `.embed` is the active column's embedding (the tied LM head,
`sampling._lm_head`). The per-column config is `model.column_cfg`.

API:
  ProgressiveLM(cfg, n_columns, column, *, rngs)
  progressive_graphdef(cfg, n_columns, column) -> graphdef        (abstract, no arrays)
  init_progressive_params(cfg, n_columns, seed) -> params         (pure dict)
  column_labels(params, column) -> labels                         ("train" / "frozen")
  split_trainable(params, column) -> (train, frozen)
  merge_trainable(train, frozen) -> params
  trainable_param_count(params, column) -> int
  param_count(params, upto_column) -> int
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from r1jax.models.transformer import (
    Block,
    KVCache,
    ModelConfig,
    apply_block,
    mask_for_pass,
    padded_causal,
    positions_from_mask,
)

__all__ = [
    "Column",
    "ProgressiveDecoder",
    "ProgressiveLM",
    "column_labels",
    "init_progressive_params",
    "merge_trainable",
    "param_count",
    "progressive_graphdef",
    "split_trainable",
    "trainable_param_count",
]

TRAIN, FROZEN = "train", "frozen"


def _check(cfg: ModelConfig, n_columns: int, column: int) -> None:
    if not cfg.tie_embeddings:
        raise ValueError("ProgressiveLM columns use tied LM heads: set tie_embeddings=True")
    if n_columns < 1:
        raise ValueError(f"n_columns must be >= 1, got {n_columns}")
    if not 0 <= column < n_columns:
        raise ValueError(f"column {column} is not in [0, {n_columns})")


class Column(nnx.Module):
    """One task's decoder: embedding, blocks, final norm (a `Decoder`'s params) and, for
    column k > 0, the zero-initialised laterals `laterals[j][l]` (U_{k,j,l}, j < k,
    l = 0..L, l = L on the final hidden state) from every earlier column."""

    def __init__(self, cfg: ModelConfig, index: int, *, rngs: nnx.Rngs):
        dt = jnp.dtype(cfg.dtype)
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, dtype=dt, rngs=rngs)
        self.layers = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layers)])
        self.norm = nnx.RMSNorm(cfg.d_model, epsilon=cfg.rms_eps, dtype=dt, rngs=rngs)
        if index > 0:  # column 0 has none: its params are exactly a Decoder's
            lateral = lambda: nnx.Linear(
                cfg.d_model,
                cfg.d_model,
                use_bias=False,
                dtype=dt,
                kernel_init=nnx.initializers.zeros,
                rngs=rngs,
            )
            self.laterals = nnx.List(
                [nnx.List([lateral() for _ in range(cfg.n_layers + 1)]) for _ in range(index)]
            )

    def lateral_sum(self, x, elders, l):
        """`x + Σ_j U_{j,l}(stop_gradient(elders[j][l]))` (x itself with no elders)."""
        for j, states in enumerate(elders):
            x = x + self.laterals[j][l](jax.lax.stop_gradient(states[l]))
        return x


class ProgressiveDecoder(nnx.Module):
    """Columns 0..`column` side by side; returns the active column's normed hidden
    states and the cache, like `Decoder` (whose place it takes in `ProgressiveLM.model`).

    `cfg`: the cache config (`n_layers` = (column+1)·L buffers, what `init_cache`
    reads, e.g. in `sampling.grouped_hidden`); `column_cfg`: one column's."""

    def __init__(self, cfg: ModelConfig, n_columns: int, column: int, *, rngs: nnx.Rngs):
        _check(cfg, n_columns, column)
        self.column_cfg = cfg
        self.n_columns = n_columns
        # Built in order, one column at a time: column k's init depends on the seed and
        # on k only, not on n_columns.
        self.columns = nnx.List([Column(cfg, k, rngs=rngs) for k in range(n_columns)])
        self._select(column)

    def _select(self, column: int) -> None:
        """Make `column` the active one (the static attributes that depend on it)."""
        _check(self.column_cfg, self.n_columns, column)
        self.cfg = dataclasses.replace(
            self.column_cfg, n_layers=(column + 1) * self.column_cfg.n_layers
        )
        self.column = column

    @property
    def embed(self) -> nnx.Embed:
        """The active column's embedding (its tied LM head: `embed.attend(h)`)."""
        return self.columns[self.column].embed

    def __call__(
        self,
        tokens_bl,
        positions_bl,
        mask_bls,
        cache: KVCache | None = None,
        cache_index=None,
        *,
        train: bool = False,
    ):
        """As `Decoder.__call__`; the cache holds (column+1)·L buffers, column j's layer
        l at j·L + l. `train`: a differentiated pass with a cache (remat applies)."""
        n_layers = self.column_cfg.n_layers
        remat = (cache is None or train) and self.column_cfg.remat != "none"
        if cache is not None and len(cache.k) != self.cfg.n_layers:
            raise ValueError(
                f"column {self.column} needs a cache of {self.cfg.n_layers} layers "
                f"((column + 1) x {n_layers}), got {len(cache.k)}"
            )
        kv_len = tokens_bl.shape[1] if cache is None else cache.v[0].shape[-2]
        mask_bls = mask_for_pass(self.column_cfg, mask_bls, tokens_bl.shape[1], kv_len)
        elders = []  # elders[j][l]: column j's stream at the input of layer l (l = L: final)
        new_k, new_v = [], []
        for k in range(self.column + 1):
            col = self.columns[k]
            x = col.embed(tokens_bl)
            states = []
            for l, layer in enumerate(col.layers):
                x = col.lateral_sum(x, elders, l)
                states.append(x)
                i = k * n_layers + l
                kv = None if cache is None else (cache.k[i], cache.v[i])
                policy = self.column_cfg.remat if remat else None
                x, kv = apply_block(layer, x, positions_bl, mask_bls, kv, cache_index, policy)
                if cache is not None:
                    new_k.append(kv[0])
                    new_v.append(kv[1])
            x = col.lateral_sum(x, elders, n_layers)
            states.append(x)
            elders.append(states)
        new_cache = None if cache is None else KVCache(tuple(new_k), tuple(new_v))
        return self.columns[self.column].norm(x), new_cache


class ProgressiveLM(nnx.Module):
    """`n_columns` progressive columns; the forward is task `column`'s (module doc).

    A drop-in for `CausalLM` in `sampling` and `evaluate`: `cfg` (cache config, tied
    head), `model` (the decoder, with `.embed`) and `__call__` as `CausalLM.__call__`.
    """

    def __init__(self, cfg: ModelConfig, n_columns: int, column: int, *, rngs: nnx.Rngs):
        _check(cfg, n_columns, column)
        self.model = ProgressiveDecoder(cfg, n_columns, column, rngs=rngs)
        self.column_cfg = cfg
        self.n_columns = n_columns
        self._select(column)

    def _select(self, column: int) -> None:
        """Make `column` the active one; the params are untouched."""
        self.model._select(column)
        self.cfg = self.model.cfg
        self.column = column

    def __call__(self, tokens_bl, positions_bl=None, mask_bls=None, cache=None, cache_index=None):
        """Returns (logits [B, L, V] float32, cache), or the logits alone when called
        with tokens only; missing positions/mask default to every token valid (causal)."""
        tokens_only = positions_bl is None and mask_bls is None and cache is None
        if cache is not None and mask_bls is None:
            raise ValueError("ProgressiveLM with a KV cache needs mask_bls [B, L, S]")
        if positions_bl is None or mask_bls is None:
            valid = jnp.ones(jnp.shape(tokens_bl), bool)
            positions_bl = positions_from_mask(valid) if positions_bl is None else positions_bl
            mask_bls = padded_causal(valid) if mask_bls is None else mask_bls
        h, cache = self.model(tokens_bl, positions_bl, mask_bls, cache, cache_index)
        logits = self.model.embed.attend(h).astype(jnp.float32)
        return logits if tokens_only else (logits, cache)


@functools.lru_cache(maxsize=8)
def _abstract_split(cfg: ModelConfig, n_columns: int):
    """`nnx.split` of an abstract `ProgressiveLM(cfg, n_columns, 0)`: tracing every
    column's init takes ~0.8 s for ten small columns, so it is done once per shape."""
    return nnx.split(nnx.eval_shape(lambda: ProgressiveLM(cfg, n_columns, 0, rngs=nnx.Rngs(0))))


@functools.lru_cache(maxsize=64)
def progressive_graphdef(cfg: ModelConfig, n_columns: int, column: int):
    """Task `column`'s static graph definition, built abstractly (no array allocated);
    merges with `init_progressive_params(cfg, n_columns, seed)` for any `column`.
    Cached (a graph definition is immutable), and derived from one abstract model per
    (cfg, n_columns) with its active column switched (the graph definition of
    `ProgressiveLM(cfg, n_columns, column)`, ~0.1 s instead of ~0.8 s)."""
    _check(cfg, n_columns, column)
    model = nnx.merge(*_abstract_split(cfg, n_columns))  # a new module: the cache stays
    model._select(column)
    return nnx.graphdef(model)


def init_progressive_params(cfg: ModelConfig, n_columns: int, seed: int):
    """All `n_columns` columns' params as a pure dict (laterals zero). Column k's
    weights depend on `seed` and k only (not on `n_columns`)."""
    _, state = nnx.split(ProgressiveLM(cfg, n_columns, 0, rngs=nnx.Rngs(seed)))
    return nnx.to_pure_dict(state)


# ------------------------------------------------------------------- freezing helpers


def _columns(params) -> dict:
    try:
        return params["model"]["columns"]
    except (KeyError, TypeError):
        raise ValueError("not ProgressiveLM params: no params['model']['columns']") from None


def _check_column(params, column: int) -> None:
    n = len(_columns(params))
    if not 0 <= column < n:
        raise ValueError(f"column {column} is not in [0, {n})")


def column_labels(params, column: int):
    """Pytree of `params`' structure: "train" on column `column`'s leaves (its own weights
    and the laterals U_{column,j,*} into it), "frozen" on every other leaf."""
    _check_column(params, column)

    def label(path, _):
        keys = tuple(getattr(p, "key", getattr(p, "idx", None)) for p in path)
        return TRAIN if keys[:3] == ("model", "columns", column) else FROZEN

    return jax.tree_util.tree_map_with_path(label, params)


_EMPTY = object()


def _partition(tree, labels, keep: str):
    """The nested dict of `tree`'s leaves labelled `keep`, `_EMPTY` when there is none
    (subtrees without such a leaf are dropped; an empty dict stays with "frozen")."""
    if not isinstance(tree, dict):
        return tree if labels == keep else _EMPTY
    out = {}
    for key, sub in tree.items():
        part = _partition(sub, labels[key], keep)
        if part is not _EMPTY:
            out[key] = part
    return out if out or (not tree and keep == FROZEN) else _EMPTY


def split_trainable(params, column: int):
    """(train, frozen): two nested dicts holding column `column`'s leaves and all the
    others (`column_labels`), with the nesting of `params`. Leaves are not copied."""
    labels = column_labels(params, column)
    train, frozen = (_partition(params, labels, keep) for keep in (TRAIN, FROZEN))
    return ({} if train is _EMPTY else train), ({} if frozen is _EMPTY else frozen)


def merge_trainable(train, frozen):
    """The full params from `split_trainable`'s halves (the union of the two trees); the
    leaves are the given arrays (frozen ones untouched). Raises on overlapping leaves."""
    out = dict(frozen)
    for key, sub in train.items():
        if key not in frozen:
            out[key] = sub
        elif isinstance(sub, dict) and isinstance(frozen[key], dict):
            out[key] = merge_trainable(sub, frozen[key])
        else:
            raise ValueError(f"merge_trainable: {key!r} is in both the trainable and frozen parts")
    return out


def _size(tree) -> int:
    return sum(math.prod(jnp.shape(x)) for x in jax.tree.leaves(tree))


def trainable_param_count(params, column: int) -> int:
    """Parameters trained for task `column`: its column and the laterals into it
    (P_col + column · (L + 1) · D²). Works on arrays or ShapeDtypeStructs."""
    _check_column(params, column)
    return _size(_columns(params)[column])


def param_count(params, upto_column: int) -> int:
    """Parameters of columns 0..`upto_column` with their laterals: what a model that has
    learned `upto_column + 1` tasks costs (later, unused columns excluded)."""
    _check_column(params, upto_column)
    cols = _columns(params)
    return sum(_size(cols[k]) for k in range(upto_column + 1))
