"""Device meshes, logical-axis rules and shardings (data × FSDP × tensor parallelism).

Mesh. `make_mesh` builds a 3-D mesh with axes ("data", "fsdp", "tensor"). Any axis may
be 1 and one may be -1 (fill the remaining devices). The RL step stays one `jax.jit`
program over global arrays, so every reduction (token counts, loss normalisers,
advantage statistics) is global and a sharded run equals the single-device run up to
float reassociation; GSPMD inserts the all-gathers and reduce-scatters.

Logical axes. Parameters and activations are described by logical axis names
(`batch, length, embed, mlp, heads, kv, vocab, head_dim, layers`); a rules table, a
tuple of (logical, mesh axes) pairs as in flax's `logical_axis_rules`, maps them to
mesh axes. The learner rules shard `embed` over `fsdp` (ZeRO-3 style: every weight and
its Adam moments are split, gathered just in time inside the step) and `mlp`, `heads`,
`kv`, `vocab` over `tensor` (Megatron-style column/row splits); the batch is split over
data × fsdp. The sampler rules drop FSDP (weights are gathered once per iteration for
the many decode steps) and keep tensor parallelism.

Parameter axes come from the parameter's path in the pure-dict tree
(`nnx.to_pure_dict`) and are checked against its rank. An unknown path raises: a new
parameter must be added to `_PARAM_AXES`, so nothing is silently replicated (which
would cost memory on every device without failing). The attention projections keep
their fused layout ([D, H·Dh] etc.), so `heads`/`kv` name the fused dimension; given the
`ModelConfig`, divisibility is checked on the head count so a head is never split.

Divisibility fallback. A dimension whose size (or head count) is not divisible by its
mesh axes keeps the longest prefix of those axes that divides it, else is replicated on
that dimension, with one log line. Example: one kv head cannot be split over tensor=2,
so k/v projections are replicated over `tensor` while q/o are split. Mesh axes of size
1 are dropped from the specs, so on a pure data-parallel mesh everything is replicated
and batches are `P("data")`, exactly the foundation's layout.
"""

from __future__ import annotations

import functools
import logging
import math
import numbers

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from r1jax.models.lora import lora_shardings

log = logging.getLogger("r1jax")

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # mesh axes that split the batch

LEARNER_RULES = (
    ("batch", BATCH_AXES),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", "tensor"),
    ("vocab", "tensor"),
    ("head_dim", None),
    ("layers", None),
)
# Sampler: no FSDP (params gathered over fsdp, which acts as extra data parallelism).
SAMPLER_RULES = tuple((k, None if k == "embed" else v) for k, v in LEARNER_RULES)

# (module name, parameter name) -> logical axes; the key is the path's last two entries.
_PARAM_AXES = {
    ("embed", "embedding"): ("vocab", "embed"),  # [V, D]
    ("q_proj", "kernel"): ("embed", "heads"),  # [D, H·Dh]
    ("q_proj", "bias"): ("heads",),
    ("k_proj", "kernel"): ("embed", "kv"),  # [D, K·Dh]
    ("k_proj", "bias"): ("kv",),
    ("v_proj", "kernel"): ("embed", "kv"),
    ("v_proj", "bias"): ("kv",),
    ("o_proj", "kernel"): ("heads", "embed"),  # [H·Dh, D]
    ("gate_proj", "kernel"): ("embed", "mlp"),  # [D, F]
    ("up_proj", "kernel"): ("embed", "mlp"),
    ("down_proj", "kernel"): ("mlp", "embed"),  # [F, D]
    ("input_norm", "scale"): ("embed",),
    ("post_attn_norm", "scale"): ("embed",),
    ("norm", "scale"): ("embed",),
    ("lm_head", "kernel"): ("embed", "vocab"),  # [D, V] (untied head)
    ("value_head", "kernel"): ("embed", None),  # [D, 1]
    ("value_head", "bias"): (None,),  # [1]
}


def learner_rules() -> tuple:
    """Rules for the training step: FSDP on `embed`, tensor parallel on the rest."""
    return LEARNER_RULES


def sampler_rules() -> tuple:
    """Rules for rollouts: params gathered over fsdp, batch over data × fsdp."""
    return SAMPLER_RULES


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices=None) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh; one axis may be -1 to fill the devices.

    Without -1 the product must divide the device count and the first `product` devices
    are used (mesh.data=1 gives the single-device baseline on a multi-device host).
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
    for name, s in sizes.items():
        if not isinstance(s, numbers.Integral) or (s < 1 and s != -1):
            raise ValueError(f"mesh.{name}={s!r}: use a positive integer or -1 (fill)")
    fill = [k for k, s in sizes.items() if s == -1]
    if len(fill) > 1:
        raise ValueError(
            f"mesh.{fill[0]} and mesh.{fill[1]} are both -1: at most one mesh axis may "
            "fill the remaining devices, give the others explicit sizes"
        )
    known = math.prod(s for s in sizes.values() if s != -1)
    if n % known:
        fixed = [k for k in sizes if sizes[k] != -1]
        what = " × ".join(f"mesh.{k}={sizes[k]}" for k in fixed)
        fill_note = f", so mesh.{fill[0]}=-1 cannot fill them" if fill else ""
        raise ValueError(
            f"{what} = {known} does not divide the {n} visible devices{fill_note}: choose "
            f"{', '.join('mesh.' + k for k in fixed)} with a product that divides {n}"
            + ("" if fill else " (or set one of them to -1 to fill the rest)")
        )
    if fill:
        sizes[fill[0]] = n // known
    shape = tuple(int(sizes[k]) for k in MESH_AXES)
    return jax.make_mesh(
        shape,
        MESH_AXES,
        axis_types=(AxisType.Auto,) * len(MESH_AXES),
        devices=devices[: math.prod(shape)],
    )


def may_splash(*cfgs) -> bool:
    """Whether a model of these `ModelConfig`s (None: absent) may run splash attention
    (`models.transformer.attention_impl`): set, or `auto` on a TPU."""
    return any(
        c is not None
        and (c.attention == "splash" or (c.attention == "auto" and jax.default_backend() == "tpu"))
        for c in cfgs
    )


def traced_under_mesh(fn, mesh: Mesh, cfgs=()):
    """`fn` traced with `mesh` as the context (abstract) mesh wherever it has several
    devices, or a model of `cfgs` may run splash attention. The model reads it for the
    layout of its activations (`models.transformer.batch_sharded`: the residual stream
    split over the batch axes, the embedding table gathered before the lookup) and for
    splash (a Mosaic kernel cannot be partitioned automatically, so the attention layer
    runs it per shard in a `shard_map`, `models.transformer.splash_shards`). On one
    device without splash, `fn` itself: the same program as without a mesh."""
    if mesh.size == 1 and not may_splash(*cfgs):
        return fn

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return fn(*args, **kwargs)

    # The program's name (profiles, XLA dumps, compile logs): a partial has none.
    name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None)
    if name:
        traced.__name__ = traced.__qualname__ = name
    return traced


def axis_size(mesh: Mesh, axis: str) -> int:
    """Size of a mesh axis (1 if the mesh has no such axis)."""
    return dict(mesh.shape).get(axis, 1)


_axis_size = axis_size


def batch_size_divisor(mesh: Mesh) -> int:
    """Number of batch shards: data × fsdp."""
    return math.prod(_axis_size(mesh, a) for a in BATCH_AXES)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over data × fsdp, the rest replicated."""
    return NamedSharding(mesh, logical_to_spec(("batch",), mesh, LEARNER_RULES))


def data_sharded(mesh: Mesh) -> NamedSharding:
    """Alias of `batch_sharding` (the foundation's name)."""
    return batch_sharding(mesh)


def check_divisible(n: int, mesh: Mesh, what: str):
    d = batch_size_divisor(mesh)
    if n % d:
        raise ValueError(
            f"{what}={n} is not divisible by the {d} batch shards (mesh.data × mesh.fsdp): "
            f"choose a multiple of {d} or set mesh.data/mesh.fsdp so their product divides it"
        )


def logical_to_spec(axes, mesh: Mesh, rules, shape=None, units=None) -> P:
    """PartitionSpec for logical `axes` (None = replicated dimension).

    A mesh axis is used at most once per spec, axes missing from the mesh or of size 1
    are dropped, and with `shape` each dimension keeps the longest prefix of its mesh
    axes whose size product divides the dimension (and `units[logical]`, e.g. the head
    count of a fused [H·Dh] dimension).
    """
    table: dict = {}
    for logical, target in rules:
        table.setdefault(logical, []).append(target)
    used: set = set()
    spec = []
    for dim, logical in enumerate(axes):
        if logical is None:
            spec.append(None)
            continue
        if logical not in table:
            raise ValueError(f"logical axis {logical!r} has no rule in {[k for k, _ in rules]}")
        sizes = []
        if shape is not None:
            sizes.append(shape[dim])
            if units and logical in units:
                sizes.append(units[logical])
        chosen = ()
        for target in table[logical]:
            cands = (target,) if isinstance(target, str) else tuple(target or ())
            cands = [a for a in cands if _axis_size(mesh, a) > 1 and a not in used]
            keep, prod = [], 1
            for a in cands:
                if any(s % (prod * _axis_size(mesh, a)) for s in sizes):
                    _note_fallback(logical, sizes, a, mesh)
                    break
                keep.append(a)
                prod *= _axis_size(mesh, a)
            if keep:
                chosen = tuple(keep)
                break
        used.update(chosen)
        spec.append(None if not chosen else chosen[0] if len(chosen) == 1 else chosen)
    return P(*spec)


_logged_fallbacks: set = set()


def _note_fallback(logical, sizes, axis, mesh):
    key = (logical, tuple(sizes), axis, _axis_size(mesh, axis))
    if key not in _logged_fallbacks:
        _logged_fallbacks.add(key)
        log.info(
            "sharding: %s of size %s is not divisible by mesh axis %s=%d; not split over it",
            logical,
            "/".join(map(str, sizes)),
            axis,
            _axis_size(mesh, axis),
        )


def _key_name(k):
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return str(k)


def _leaf_axes(path, leaf) -> tuple:
    names = tuple(_key_name(k) for k in path)
    axes = _PARAM_AXES.get(names[-2:])
    if axes is None and "laterals" in names and names[-1] == "kernel":
        axes = ("embed", None)  # progressive networks' lateral U_{k,j,l} [D, D]
    where = "/".join(map(str, names))
    if axes is None:
        raise ValueError(
            f"no logical axes for parameter {where} {tuple(leaf.shape)}: add its "
            "(module, param) entry to r1jax.parallel._PARAM_AXES"
        )
    if len(axes) != len(leaf.shape):
        raise ValueError(
            f"parameter {where} has shape {tuple(leaf.shape)} but _PARAM_AXES gives "
            f"{len(axes)} axes {axes}: update the entry to the new layout"
        )
    return axes


def param_logical_axes(params):
    """Pytree of logical-axis tuples, one per parameter (raises on unknown paths).

    The tuples are pytree nodes: map over the result with
    `is_leaf=lambda x: isinstance(x, tuple)`.
    """
    return jax.tree_util.tree_map_with_path(_leaf_axes, params)


def model_units(cfg) -> dict:
    """Indivisible units of the fused attention dimensions of a `ModelConfig`."""
    return {"heads": cfg.n_heads, "kv": cfg.n_kv_heads}


def param_shardings(params, mesh: Mesh, rules=None, *, cfg=None):
    """Pytree of NamedSharding for `params` (arrays or ShapeDtypeStructs).

    `cfg` (a ModelConfig) makes the `heads`/`kv` divisibility check use head counts.
    """
    rules = LEARNER_RULES if rules is None else rules
    units = None if cfg is None else model_units(cfg)

    def one(path, leaf):
        spec = logical_to_spec(_leaf_axes(path, leaf), mesh, rules, tuple(leaf.shape), units)
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(one, params)


def opt_state_shardings(opt_state, params, shardings, mesh: Mesh):
    """Shardings for an optax state: subtrees mirroring `params` (Adam mu/nu, ...) get
    the params' shardings leaf by leaf where shapes match; counts and other leaves are
    replicated."""
    repl = replicated(mesh)
    p_def = jax.tree.structure(params)
    p_leaves = jax.tree.leaves(params)
    s_leaves = jax.tree.leaves(shardings)

    def mirrors(x):
        return bool(p_leaves) and jax.tree.structure(x) == p_def

    def one(x):
        if not mirrors(x):
            return repl
        out = [
            s if tuple(getattr(a, "shape", ())) == tuple(p.shape) else repl
            for a, p, s in zip(jax.tree.leaves(x), p_leaves, s_leaves)
        ]
        return jax.tree.unflatten(p_def, out)

    return jax.tree.map(one, opt_state, is_leaf=mirrors)


def state_shardings(abstract_state, mesh: Mesh, rules=None, *, policy_cfg=None, value_cfg=None):
    """Shardings for a TrainState (typically from `jax.eval_shape`).

    `policy`, `ref` and `value` are sharded by the rules, `policy_opt`/`value_opt` mirror
    their params, the EWC Fisher and anchor (`ewc`) the policy's; everything else (step,
    rng, controllers, counters) is replicated.
    """
    s = abstract_state
    base = getattr(s, "base", {})
    if jax.tree.leaves(base):
        # LoRA: the frozen base follows the rules; each adapter pair takes its kernel's
        # input (a) and output (b) axes; the reference is adapters too.
        base_sh = param_shardings(base, mesh, rules, cfg=policy_cfg)
        pol = lora_shardings(s.policy, base_sh)
        ref = lora_shardings(s.ref, base_sh)
    else:
        base_sh = base
        pol = param_shardings(s.policy, mesh, rules, cfg=policy_cfg)
        ref = param_shardings(s.ref, mesh, rules, cfg=policy_cfg)
    val = param_shardings(s.value, mesh, rules, cfg=value_cfg)
    out = jax.tree.map(lambda _: replicated(mesh), s)
    ewc = getattr(s, "ewc", {})
    if jax.tree.leaves(ewc):  # the Fisher and the anchor are shaped (and split) like the policy
        out = out.replace(ewc=out.ewc.replace(fisher=pol, anchor=pol))
    return out.replace(
        policy=pol,
        ref=ref,
        policy_opt=opt_state_shardings(s.policy_opt, s.policy, pol, mesh),
        value=val,
        value_opt=opt_state_shardings(s.value_opt, s.value, val, mesh),
        base=base_sh,
    )
