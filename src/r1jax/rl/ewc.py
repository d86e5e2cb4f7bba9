"""Elastic Weight Consolidation as pure functions: Fisher diagonal, consolidation, penalty.

EWC (Kirkpatrick et al. 2017) keeps what earlier tasks taught by pulling each parameter
toward its value after those tasks, in proportion to how much the task's likelihood
depends on it (the diagonal of the Fisher information)::

    penalty(θ) = λ/2 · Σ_k Σ_i F_k,i (θ_i − θ*_k,i)²        (offline: one anchor per task)
    penalty(θ) = λ/2 · Σ_i F*_i (θ_i − θ*_i)²,  F* ← γ F* + F_k,  θ* ← θ_k   (online)

Online EWC is Schwarz et al. 2018 ("Progress & Compress"): one running Fisher decayed by
γ and one anchor, the parameters after the last task.

**Offline EWC in constant memory.** The per-task sum is one quadratic: with
``F = Σ_k F_k`` and the Fisher-weighted mean anchor ``ā = Σ_k F_k θ*_k / F``,
``Σ_k F_k (θ − θ*_k)² = F (θ − ā)² + Σ_k F_k (θ*_k − ā)²``, the last term a constant.
:class:`EWCState` holds ``F``, ``ā`` and that constant, so the penalty (its value and
its gradient) equals the per-task sum exactly, whatever the number of tasks, in two
copies of the parameters; the squares are taken of differences (``θ − ā``), never of
large values that cancel. ``consolidate`` updates the three exactly.

**The Fisher diagonal** is the mean over examples of the squared gradient of each
example's log-likelihood, ``F_i = E_x E_y [(∂ log p(y|x) / ∂θ_i)²]``: per-example
gradients by ``vmap(grad)`` (not the square of a batch-mean gradient, which
underestimates F by the batch's cancellations), in chunks of ``chunk`` examples under
``lax.scan``, so memory holds ``chunk`` gradients at a time. Which ``y``:

* the **true Fisher**: ``y`` drawn from the model itself (``p(y|x)``), the Fisher
  information proper; the caller samples completions with the policy;
* the **empirical Fisher**: ``y`` the reference solutions (cheaper, no sampling; a
  different estimator, Kunstner et al. 2019).

Both are ``fisher_diagonal`` of the same log-likelihood on different ``y``: the kind is
the caller's choice of examples (``r1jax.train.continual``). Everything is elementwise
on pytrees shaped like the parameters, so under ``jit`` over a mesh the Fisher, the
anchor and the penalty's gradient take the parameters' shardings.

The penalty is a named loss term of the jitted SFT and RL steps (``TrainState.ewc``;
metric ``ewc_penalty``) and the EWC state is part of the train state, so checkpoints
hold the Fisher and anchor and a continual run resumes exactly.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

__all__ = [
    "EWC_MODES",
    "EWCState",
    "consolidate",
    "fisher_diagonal",
    "init_ewc",
    "penalty",
]

EWC_MODES = ("offline", "online")


@struct.dataclass
class EWCState:
    """The consolidated importance of earlier tasks (a pytree; lives in the train state).

    Attributes:
      fisher: F, shaped like the params: offline the sum of the tasks' Fisher diagonals,
        online the γ-decayed running sum.
      anchor: θ*, shaped like the params: offline the Fisher-weighted mean of the tasks'
        anchors (the params after each task), online the params after the last task.
      const: float32 scalar, Σ_k Σ_i F_k,i (θ*_k,i − ā_i)² (offline; 0 online), so
        ``penalty`` equals the per-task sum exactly.
      lam: float32 scalar λ, the penalty's strength.
      tasks: int32 scalar, the number of tasks consolidated.
    """

    fisher: Any
    anchor: Any
    const: jax.Array
    lam: jax.Array
    tasks: jax.Array


def init_ewc(params, lam: float) -> EWCState:
    """No task consolidated yet: zero Fisher (the penalty is 0), anchor = ``params``."""
    return EWCState(
        fisher=jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params),
        anchor=jax.tree.map(lambda p: jnp.array(p, jnp.float32), params),  # a copy
        const=jnp.zeros((), jnp.float32),
        lam=jnp.asarray(lam, jnp.float32),
        tasks=jnp.zeros((), jnp.int32),
    )


def consolidate(
    ewc: EWCState, fisher, params, *, mode: str = "offline", gamma: float = 1.0
) -> EWCState:
    """Adds a finished task: its Fisher diagonal ``fisher`` and its anchor ``params``.

    ``mode="offline"``: F ← F + F_k, ā ← (F ā + F_k θ_k) / (F + F_k) (θ_k where both
    are 0) and the constant grows so that the penalty is the sum over tasks;
    ``mode="online"``: F ← γ F + F_k, θ* ← θ_k (``gamma`` only applies here).
    """
    if mode not in EWC_MODES:
        raise ValueError(f"EWC mode must be one of {EWC_MODES}, got {mode!r}")
    if mode == "online" and not 0.0 <= gamma <= 1.0:
        raise ValueError(f"online EWC gamma must be in [0, 1], got {gamma}")
    # Copies: the anchor must not share a buffer with the params a step donates.
    f32 = lambda t: jax.tree.map(lambda x: jnp.array(x, jnp.float32), t)  # noqa: E731
    fisher, params = f32(fisher), f32(params)
    if mode == "online":
        return ewc.replace(
            fisher=jax.tree.map(lambda f, fk: gamma * f + fk, ewc.fisher, fisher),
            anchor=params,
            const=jnp.zeros((), jnp.float32),
            tasks=ewc.tasks + 1,
        )
    total = jax.tree.map(jnp.add, ewc.fisher, fisher)

    def mean_anchor(f, a, fk, t, tot):
        return jnp.where(tot > 0, (f * a + fk * t) / jnp.where(tot > 0, tot, 1.0), t)

    anchor = jax.tree.map(mean_anchor, ewc.fisher, ewc.anchor, fisher, params, total)
    # Σ_{old} F_j (a_j − ā')² = Σ_{old} F_j (a_j − ā)² + F (ā − ā')² (Σ F_j (a_j − ā) = 0).
    moved = jax.tree.map(
        lambda f, a, fk, t, new: jnp.sum(f * jnp.square(a - new) + fk * jnp.square(t - new)),
        ewc.fisher,
        ewc.anchor,
        fisher,
        params,
        anchor,
    )
    const = ewc.const + sum(jax.tree.leaves(moved), jnp.zeros((), jnp.float32))
    return ewc.replace(fisher=total, anchor=anchor, const=const, tasks=ewc.tasks + 1)


def penalty(params, ewc: EWCState) -> jax.Array:
    """λ/2 · (Σ_i F_i (θ_i − θ*_i)² + const): the EWC loss term (float32 scalar)."""
    terms = jax.tree.map(
        lambda p, f, a: jnp.sum(f * jnp.square(p.astype(jnp.float32) - a)),
        params,
        ewc.fisher,
        ewc.anchor,
    )
    quad = sum(jax.tree.leaves(terms), jnp.zeros((), jnp.float32))
    return 0.5 * ewc.lam * (quad + ewc.const)


def fisher_diagonal(
    logp_fn: Callable[[Any, Any], jax.Array],
    params,
    examples,
    *,
    weights: jax.Array | None = None,
    chunk: int = 16,
):
    """Diagonal Fisher ``Σ_n w_n g_n² / Σ_n w_n``, ``g_n = ∇_θ logp_fn(θ, example_n)``.

    ``logp_fn(params, example) -> scalar``: the log-likelihood of ONE example (a pytree
    of arrays without the batch axis); ``examples``: the same pytree with a leading axis
    N. Per-example gradients by ``vmap(grad(logp_fn))`` over chunks of ``chunk``
    examples (``lax.scan``), so at most ``chunk`` gradients are live; N is padded to a
    multiple of ``chunk`` with zero-weight copies of the first example. ``weights``
    (``[N]``, default 1) drop or weight examples (0 = padding). Jittable; returns a
    float32 pytree shaped like ``params``.
    """
    n = jax.tree.leaves(examples)[0].shape[0]
    if n == 0:
        raise ValueError("fisher_diagonal: no examples")
    chunk = max(1, min(int(chunk), n))
    w = jnp.ones((n,), jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    pad = -n % chunk
    if pad:
        examples = jax.tree.map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)], axis=0), examples
        )
        w = jnp.concatenate([w, jnp.zeros((pad,), jnp.float32)])
    steps = (n + pad) // chunk
    xs = jax.tree.map(lambda x: x.reshape(steps, chunk, *x.shape[1:]), (examples, w))
    per_example = jax.vmap(jax.grad(logp_fn), in_axes=(None, 0))
    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)

    def body(acc, batch):
        ex, wc = batch
        grads = per_example(params, ex)  # leaves [chunk, *param shape]
        sq = jax.tree.map(
            lambda g: jnp.einsum("c,c...->...", wc, jnp.square(g.astype(jnp.float32))), grads
        )
        return jax.tree.map(jnp.add, acc, sq), None

    total, _ = jax.lax.scan(body, zeros, xs)
    denom = jnp.maximum(w.sum(), 1e-12)
    return jax.tree.map(lambda s: s / denom, total)
