"""The reference pass and the learner compute the same numbers (issue 22).

At the first RL iteration the reference is the policy (same parameters), so the KL term
of the policy loss must be exactly 0 before the first update: the reference log-probs
are computed in the learner's shape (a microbatch per pass, the prompt once per group
when the learner's is) by the same code (`rl.logit_chunk` > 0: log-probs from the hidden
states, each chunk under `jax.checkpoint`, so the forward under `grad` is the forward
alone). Observed through the `ref_kl` metric with the k2 estimator (½ d², so any
difference d of a log-prob, even one float32 ulp, shows as a positive value).
"""

import jax
import pytest

from r1jax.config import validate
from r1jax.configs.arith_tiny import get_config
from r1jax.models import transformer
from r1jax.train.experiment import Experiment


def _first_iteration(tmp_path, **rl):
    c = get_config("smoke")
    with c.unlocked():
        c.sft.rows = 8
        c.rl.prompts_per_iter = 8
        c.reward.num_workers = 0
        # One minibatch, one epoch: the loss's KL is measured at the starting params.
        c.rl.update(epochs=1, num_minibatches=1, kl_coef=0.05, kl_estimator="k2", logit_chunk=8)
        for k, v in rl.items():
            if k in ("dtype", "attention"):
                c.model[k] = v
            else:
                c.rl[k] = v
    validate(c)
    exp = Experiment(c, str(tmp_path))
    try:
        state = exp.start_rl(exp.init_state)
        _, m = exp.rl_fn(state, exp.rl_batch(0))
        return {k: float(v) for k, v in m.items() if getattr(v, "ndim", 1) == 0}
    finally:
        exp.close()


@pytest.mark.parametrize(
    "rl",
    [
        dict(dtype="float32"),
        dict(dtype="bfloat16"),
        # microbatches of 2 rows = one group each (the grouped forward), and whole
        # sequences in one logit chunk
        dict(dtype="float32", algo="grpo", grad_accum=4, logit_chunk=64),
        # prioritised minibatches: rows one by one, the per-row forward
        dict(dtype="float32", algo="grpo", prioritized=True, grad_accum=2),
    ],
    ids=["fp32", "bf16", "grpo-grouped-one-chunk", "grpo-per-row"],
)
def test_reference_and_learner_agree_bit_for_bit_at_the_start(tmp_path, rl):
    m = _first_iteration(tmp_path, **rl)
    assert m["ref_kl"] == 0.0, m["ref_kl"]
    # ... while the sampler's π_old (the KV-cached decode, other shapes) only agrees to
    # float rounding: `kl` is a different, nonnegative measurement of the same policies.
    assert 0.0 <= m["kl"] < 1e-4


def test_the_reference_pass_runs_a_kernels_training_variant_as_the_learner(tmp_path, monkeypatch):
    """A kernel with a VJP of its own (cuDNN's flash attention on a GPU: its training
    variant keeps softmax statistics, and may round otherwise than the inference one)
    runs its forward rule in the learner's pass under `grad`; the reference pass runs
    through `jax.vjp`'s forward, so it calls the same variant. Recorded on the CPU with a
    stand-in kernel (the "xla" attention under a custom VJP) that notes, per pass shape,
    which variant was traced."""
    traced = {"primal": set(), "fwd": set()}
    dpa = lambda q, k, v, mask: jax.nn.dot_product_attention(
        q, k, v, mask=mask, implementation="xla"
    )

    @jax.custom_vjp
    def kernel(q, k, v, mask):
        traced["primal"].add((q.shape, k.shape))
        return dpa(q, k, v, mask)

    def fwd(q, k, v, mask):
        traced["fwd"].add((q.shape, k.shape))
        return dpa(q, k, v, mask), (q, k, v, mask)

    def bwd(res, g):
        q, k, v, mask = res
        return (*jax.vjp(lambda q, k, v: dpa(q, k, v, mask), q, k, v)[1](g), None)

    kernel.defvjp(fwd, bwd)
    monkeypatch.setattr(
        transformer.Attention,
        "_fused",
        lambda self, q, k, v, mask, impl: kernel(
            q, k.astype(q.dtype), v.astype(q.dtype), mask[:, None]
        ),
    )
    m = _first_iteration(tmp_path, attention="xla", algo="grpo", grad_accum=4, logit_chunk=64)
    assert traced["fwd"], traced  # the learner's passes
    # no pass of the learner's shapes ran the inference variant (only the sampler's
    # prefill, of other shapes, does)
    assert not traced["primal"] & traced["fwd"], traced
    assert m["ref_kl"] == 0.0, m["ref_kl"]
