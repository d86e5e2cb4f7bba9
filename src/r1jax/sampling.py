"""Jitted generation with a KV cache, and per-token log-probabilities.

`generate` is a pure function (prefill + a `lax.while_loop` of decode steps that stops
once every row has written EOS) meant to be
called inside a larger jitted program (the RL iteration) or jitted on its own
(evaluation). Prompts are left-padded to a common length P so every row writes the
cache at the same index; completions are `[B, T]` with PAD after the first EOS.

The sampler and the learner compute log-probabilities the same way
(`logits / temperature`, float32 log-softmax), so the PPO ratio starts at 1.

Randomness is per row: the token of row b at decode step t is drawn with the key
`fold_in(fold_in(key, t), row_offset + b)`, so a row's sample does not depend on how the
batch is split. A data-parallel shard holding global rows `[r, r + B)` passes
`row_offset=r` and samples exactly what one device sampling the whole batch would.
Each draw is exact Gumbel-max sampling done in two levels (a chunk of the vocabulary,
then a token in it), which needs ~2·sqrt(V) random variates a row instead of V. Without
a nucleus (`top_p` = 1), the draw, log π(token) and the entropy come from one
exponential of the logits (`sample_softmax`); with one, from the masked log-softmax
(`nucleus_logp`, `categorical_two_level`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from r1jax.models.transformer import (
    RopeTables,
    attention_impl,
    extend_cache,
    init_cache,
    padded_causal,
    positions_from_mask,
    rope_tables,
)


class Rollout(NamedTuple):
    tokens_bt: jax.Array  # [B, T] int32 sampled completion (PAD after EOS)
    logp_bt: jax.Array  # [B, T] float32 log π(token) under softmax(logits / temperature)
    mask_bt: jax.Array  # [B, T] bool, True up to and including EOS
    entropy_bt: jax.Array  # [B, T] float32 entropy of softmax(logits / temperature)
    # (with top_p < 1 both are still of the full tempered distribution: see generate)


def _scaled_logits(logits, temperature):
    """float32 `logits / temperature` (temperature 0, greedy: the logits themselves)."""
    t = jnp.where(temperature > 0, temperature, 1.0)
    return logits.astype(jnp.float32) / t


def _scaled_logp(logits, temperature):
    return jax.nn.log_softmax(_scaled_logits(logits, temperature), axis=-1)


def nucleus_logp(logp_bv, top_p, *, early_exit: bool | None = None):
    """`logp_bv` with every token outside the top-p nucleus set to -inf.

    The nucleus of a row is the smallest set of most-probable tokens whose mass reaches
    `top_p`: token i is kept iff the mass of the tokens more probable than it is
    < top_p. The most probable token is always kept (a tiny `top_p` is greedy), and
    tokens tied with the least probable kept one are kept too.

    No sort (XLA's CPU sort of a [64, 8192] array takes ~175 ms, 200x a log-softmax;
    on an H200 a sort-based nucleus made a 0.5B-model rollout 1.5x slower than this):
    the threshold is found by bisection on the float32 bit pattern of the probability
    (monotone for non-negative floats). With f(τ) = mass of tokens with p > τ, which
    falls as τ rises, the kept set is {p >= τ*} for the smallest τ* with f(τ*) < top_p;
    each step halves [lo, hi] with one masked sum over the vocabulary, and 31 steps
    pin τ* exactly. `early_exit` (default: on CPU only) stops once every row's interval
    is a single value (fewer steps when p_max / p_min is small); on a GPU a
    data-dependent inner loop costs far more than the steps it saves, so there the 31
    steps are unrolled.
    """
    p_bv = jnp.exp(logp_bv)
    # Float min / max (p >= 0 orders as its bit pattern): an integer reduction of the
    # bit patterns is several times slower on XLA:CPU.
    to_bits = lambda x: jax.lax.bitcast_convert_type(x, jnp.int32)
    lo_b = to_bits(jnp.min(p_bv, axis=-1))  # f(just below p_min) = 1 >= top_p: τ* >= p_min
    hi_b = to_bits(jnp.max(p_bv, axis=-1))  # f(p_max) = 0 < top_p: τ* <= p_max

    def halve(c):
        lo_b, hi_b = c
        mid_b = lo_b + (hi_b - lo_b) // 2
        tau_b1 = jax.lax.bitcast_convert_type(mid_b, jnp.float32)[:, None]
        ok_b = jnp.sum(jnp.where(p_bv > tau_b1, p_bv, 0.0), axis=-1) < top_p
        return jnp.where(ok_b, lo_b, mid_b + 1), jnp.where(ok_b, mid_b, hi_b)

    if early_exit is None:
        early_exit = jax.default_backend() == "cpu"
    if early_exit:
        cond = lambda c: jnp.any(c[0] < c[1])
        _, thresh_b = jax.lax.while_loop(cond, halve, (lo_b, hi_b))
    else:  # hi - lo < 2**31: 31 halvings always suffice
        _, thresh_b = jax.lax.fori_loop(0, 31, lambda _, c: halve(c), (lo_b, hi_b), unroll=True)
    return jnp.where(to_bits(p_bv) >= thresh_b[:, None], logp_bv, -jnp.inf)


def prefill(model, prompt_bp, prompt_mask_bp, max_new_tokens: int):
    """Runs the whole prompt in one forward pass and fills a cache of P + T positions.

    Returns `(logits_bv, cache, kv_valid_bs, next_pos_b)`: the logits at the last prompt
    position (they predict the first new token), the cache, which cache positions hold
    real tokens (`[B, P + T]`, False beyond the prompt) and each row's next position id.
    """
    b, p = prompt_bp.shape
    kv_valid_bs = jnp.concatenate([prompt_mask_bp, jnp.zeros((b, max_new_tokens), bool)], 1)
    positions_bp = positions_from_mask(prompt_mask_bp)
    # The prompt attends over its own P positions (a cache of P + T would triple the
    # prefill's attention work on masked-out keys); the cache grows to P + T after.
    cache = init_cache(model.cfg, b, p)
    # The decoder over all P positions, the LM head on the last one only (the other
    # P - 1 rows of logits would be discarded: 40% of a small model's prefill FLOPs).
    h_bpd, cache = model.model(prompt_bp, positions_bp, padded_causal(prompt_mask_bp), cache, 0)
    cache = extend_cache(cache, p + max_new_tokens)
    return _lm_head(model, h_bpd[:, -1]), cache, kv_valid_bs, positions_bp[:, -1] + 1


def _lm_head(model, h):
    """`CausalLM`'s output projection on hidden states, float32 logits (as its __call__)."""
    logits = model.model.embed.attend(h) if model.cfg.tie_embeddings else model.lm_head(h)
    return logits.astype(jnp.float32)


def _chunking(v: int) -> tuple[int, int]:
    """`(n, c)`: the vocabulary cut into n chunks of c tokens (n·c >= v, padded with -inf),
    c ~ sqrt(V); a divisor of V when one lies in [c, 2c] (no padded copy: 8,192 = 64 x
    128)."""
    c = math.isqrt(v - 1) + 1 if v > 1 else 1
    for d in range(c, min(2 * c, v) + 1):
        if v % d == 0:
            return v // d, d
    return -(-v // c), c


def categorical_two_level(key, logp_v):
    """One draw from softmax(logp_v) (a 1-D row; -inf entries are never drawn).

    Exact, like `jax.random.categorical`, but with ~2·sqrt(V) Gumbel variates instead of
    V: the vocabulary is cut into n chunks of c ~ sqrt(V) tokens (`_chunking`); a chunk is
    drawn by its log-mass (logsumexp), then a token within it, and P(chunk) ·
    P(token | chunk) = P(token). Threefry bits for B x V variates were a third of a CPU
    decode step.
    """
    v = logp_v.shape[-1]
    n, c = _chunking(v)
    x_nc = jnp.pad(logp_v, (0, n * c - v), constant_values=-jnp.inf).reshape(n, c)
    key_chunk, key_token = jax.random.split(key)
    j = jax.random.categorical(key_chunk, jax.nn.logsumexp(x_nc, axis=-1))
    # The chunk's entries read from logp_v itself (not from the padded copy: under vmap
    # that gather made XLA materialise the padded array a second time).
    x_c = jnp.take(logp_v, j * c + jnp.arange(c), mode="fill", fill_value=-jnp.inf)
    return j * c + jax.random.categorical(key_token, x_c)


def softmax_stats(x_bv):
    """`(max_b, log_normaliser_b, entropy_b, chunk_mass_bn)` of softmax(x_bv) (finite
    float32 logits, already divided by the temperature) from one exponential of the
    logits: e = exp(x - max) summed per chunk of the vocabulary (`_chunking`; the masses
    the two-level draw picks a chunk by), their total s, and the entropy
    log s - Σ e·(x - max) / s. log π of a token is `logp_at(x_bv, max_b, log_s_b, tok_b)`.
    """
    b, v = x_bv.shape
    n, c = _chunking(v)
    m_b = jnp.max(x_bv, axis=-1)
    xs_bv = x_bv
    if n * c > v:  # padding of the most negative float: e = 0 and e·x = 0 (-inf: nan)
        low = jnp.finfo(jnp.float32).min
        xs_bv = jnp.pad(x_bv, ((0, 0), (0, n * c - v)), constant_values=low)
    xs_bnc = xs_bv.reshape(b, n, c) - m_b[:, None, None]
    e_bnc = jnp.exp(xs_bnc)
    mass_bn = jnp.sum(e_bnc, axis=-1)
    s_b = jnp.sum(mass_bn, axis=-1)
    log_s_b = jnp.log(s_b)
    entropy_b = log_s_b - jnp.sum(e_bnc * xs_bnc, axis=(1, 2)) / s_b
    return m_b, log_s_b, entropy_b, mass_bn


def draw_by_chunks(keys_b, x_bv, chunk_mass_bn):
    """One exact draw per row from softmax(x_bv) given its chunk masses (`softmax_stats`):
    a chunk by its mass, then a token within it by its logit (Gumbel-max at both levels,
    like `categorical_two_level`), the n + c variates of a row from one threefry call
    (XLA:CPU runs each call as a loop: a split and two calls cost 1.6x more)."""
    n, c = _chunking(x_bv.shape[-1])
    g_bk = jax.vmap(lambda k: jax.random.gumbel(k, (n + c,), jnp.float32))(keys_b)
    j_b = jnp.argmax(jnp.log(chunk_mass_bn) + g_bk[:, :n], axis=-1)
    idx_bc = j_b[:, None] * c + jnp.arange(c)
    x_bc = jnp.take_along_axis(x_bv, idx_bc, axis=-1, mode="fill", fill_value=-jnp.inf)
    return (j_b * c + jnp.argmax(x_bc + g_bk[:, n:], axis=-1)).astype(jnp.int32)


def sample_softmax(keys_b, x_bv):
    """One draw per row from softmax(x_bv), with what a rollout keeps:
    `(token_b, max_b, log_normaliser_b, entropy_b)`. One exponential of the logits and one
    threefry call per row, where the log-softmax, the entropy and the chunks' logsumexp
    took one each: batch 128 x 8,192 on the 2-core CPU, 1.1-1.7 ms against 2.3-2.8 ms."""
    m_b, log_s_b, entropy_b, mass_bn = softmax_stats(x_bv)
    return draw_by_chunks(keys_b, x_bv, mass_bn), m_b, log_s_b, entropy_b


def _draw_nucleus(keys_b, x_bv, m_b, log_s_b, top_p):
    """One draw per row from the top-p nucleus of softmax(x_bv)."""
    logp_bv = (x_bv - m_b[:, None]) - log_s_b[:, None]
    return jax.vmap(categorical_two_level)(keys_b, nucleus_logp(logp_bv, top_p))


def logp_at(x_bv, max_b, log_normaliser_b, tok_b):
    """log softmax(x_bv) at `tok_b` [B], given each row's max and log-normaliser."""
    return jnp.take_along_axis(x_bv, tok_b[:, None], axis=-1)[:, 0] - max_b - log_normaliser_b


def generate(
    model,
    prompt_bp,
    prompt_mask_bp,
    key,
    *,
    max_new_tokens: int,
    temperature,
    eos_id: int,
    pad_id: int,
    row_offset=0,
    top_p=1.0,
    num_samples: int = 1,
) -> Rollout:
    """Samples `max_new_tokens` tokens per prompt (greedy when temperature == 0).

    `num_samples` G: each prompt row is sampled G times; the rollout has `B·G` rows,
    prompt b's samples at rows `[b·G, (b+1)·G)` (as `jnp.repeat(prompt, G, 0)` would
    give). The prompt is prefilled once and its cache shared by its G rows.

    `row_offset` (int or traced scalar) is the global index of this batch's first row;
    it selects the rows' random streams (module docstring).

    `top_p` (float or traced scalar; 1.0 = off) samples from the nucleus of
    `softmax(logits / temperature)` (`nucleus_logp`). At 1.0 the result is bit-identical
    to not passing it (a Python 1.0 skips the nucleus code; a traced one takes the
    identity branch of a `lax.cond`). Under top-p, `logp_bt` and `entropy_bt` are still
    those of the full temperature-scaled distribution, not of the renormalised nucleus:
    that is exactly what the learner recomputes (`token_logp`), so the PPO ratio starts
    at 1; the truncation is a small, ignored off-policy bias (the nucleus holds at least
    `top_p` of the mass).
    """
    b, p = prompt_bp.shape
    t_max = max_new_tokens
    logits_bv, cache, kv_valid_bs, pos_b = prefill(model, prompt_bp, prompt_mask_bp, t_max)
    if num_samples > 1:
        b *= num_samples
        logits_bv, cache, kv_valid_bs, pos_b = jax.tree.map(
            lambda x: jnp.repeat(x, num_samples, axis=0), (logits_bv, cache, kv_valid_bs, pos_b)
        )
    temperature = jnp.asarray(temperature, jnp.float32)
    top_p_arg = top_p
    nucleus_off = isinstance(top_p, (int, float)) and top_p >= 1.0
    top_p = jnp.asarray(top_p, jnp.float32)
    row_ids_b = jnp.asarray(row_offset, jnp.int32) + jnp.arange(b, dtype=jnp.int32)
    fold_rows = jax.vmap(jax.random.fold_in, in_axes=(None, 0))

    def sample(t, logits_bv, done_b, outs):
        """Draws the token of decode step t and writes it (and its logp, entropy) at t."""
        keys = fold_rows(jax.random.fold_in(key, t), row_ids_b)
        x_bv = _scaled_logits(logits_bv, temperature)
        m_b, log_s_b, ent_b, mass_bn = softmax_stats(x_bv)
        if nucleus_off:
            sampled = draw_by_chunks(keys, x_bv, mass_bn)
        elif isinstance(top_p_arg, (int, float)):
            sampled = _draw_nucleus(keys, x_bv, m_b, log_s_b, top_p)
        else:
            sampled = jax.lax.cond(
                top_p < 1.0,
                lambda: _draw_nucleus(keys, x_bv, m_b, log_s_b, top_p),
                lambda: draw_by_chunks(keys, x_bv, mass_bn),
            )
        tok_b = jnp.where(temperature > 0, sampled, jnp.argmax(logits_bv, axis=-1))
        tok_b = jnp.where(done_b, pad_id, tok_b).astype(jnp.int32)
        lp_b = logp_at(x_bv, m_b, log_s_b, tok_b)
        valid_b = ~done_b
        new = (tok_b, jnp.where(valid_b, lp_b, 0.0), valid_b, jnp.where(valid_b, ent_b, 0.0))
        outs = tuple(
            jax.lax.dynamic_update_slice_in_dim(o, x[:, None].astype(o.dtype), t, 1)
            for o, x in zip(outs, new)
        )
        return tok_b, valid_b, outs

    def step(carry):
        t, cache, logits_bv, kv_valid_bs, done_b, outs = carry
        tok_b, valid_b, outs = sample(t, logits_bv, done_b, outs)
        idx = p + t
        kv_valid_bs = jax.lax.dynamic_update_slice_in_dim(kv_valid_bs, valid_b[:, None], idx, 1)
        # Cache positions after idx are still False in kv_valid_bs, so it is the causal
        # mask as it stands: no [B, 1, S] comparison against the step index needed.
        logits_b1v, cache = model(tok_b[:, None], rope_at(t), kv_valid_bs[:, None, :], cache, idx)
        done_b = done_b | (tok_b == eos_id)
        return (t + 1, cache, logits_b1v[:, 0], kv_valid_bs, done_b, outs)

    def not_finished(carry):
        t, done_b = carry[0], carry[4]
        return (t < t_max - 1) & ~jnp.all(done_b)

    # Decode until every row has written EOS (or T tokens): a while loop, so a batch of
    # short answers stops early. Positions never reached keep PAD / 0 / False, exactly
    # what a full-length scan writes after EOS. The loop body samples token t and runs
    # the model on it; the last token is sampled after the loop, so there is no forward
    # pass whose logits nobody reads (prefill + T - 1 decode passes, as in HF generate).
    # If the loop stopped because every row ended, that last sample writes PAD / 0 /
    # False, which the outputs already hold.
    # The cache is updated in place: one buffer per layer, written with
    # dynamic_update_slice and carried through the loop, in the layout the attention
    # dots read (models/transformer.py, KVCache). Checked in the compiled HLO
    # (benchmarks/sampling_bench.py --hlo_check): on XLA:CPU the while body holds no
    # copy or transpose of a cache-sized buffer on one device (with the earlier
    # [B, S, K, Dh] layout it held one per layer for K and for V, every step; with
    # [B, K, ...] buffers carried as they are, three copies of each: see BENCHMARKS.md,
    # "Sampling vs transformers" and session 36).
    outs = (
        jnp.full((b, t_max), pad_id, jnp.int32),
        jnp.zeros((b, t_max), jnp.float32),
        jnp.zeros((b, t_max), bool),
        jnp.zeros((b, t_max), jnp.float32),
    )
    if t_max == 0:
        return Rollout(*outs)
    # The rotary cos/sin of every decode position, once (a step slices its own): in the
    # loop body XLA evaluated them per element of each layer's q and k (models.RopeTables).
    cfg = model.cfg
    tables = rope_tables(
        pos_b[:, None] + jnp.arange(t_max), cfg.head_dim, cfg.rope_theta, cfg.rope_scaling
    )

    def rope_at(t):
        return RopeTables(*(jax.lax.dynamic_slice_in_dim(x, t, 1, axis=1) for x in tables))

    # On one device the loop carries each buffer with batch and heads merged
    # (`KVCache.flat_in_loop`): the layout the attention dots read, so XLA updates it in
    # place without a copy (BENCHMARKS.md, session 36).
    init = (jnp.int32(0), cache.flat_in_loop(), logits_bv, kv_valid_bs, jnp.zeros((b,), bool))
    init = (*init, outs)
    t, _, logits_bv, _, done_b, outs = jax.lax.while_loop(not_finished, step, (*init,))
    _, _, outs = sample(t, logits_bv, done_b, outs)
    return Rollout(*outs)


def sequence_hidden(model, prompt_bp, prompt_mask_bp, completion_bt, completion_mask_bt):
    """`sequence_logits` before the output projection: `[B, T, D]`, row t the state that
    predicts `completion_bt[:, t]` (no `[B, P + T, V]` logits are formed)."""
    p = prompt_bp.shape[1]
    tokens = jnp.concatenate([prompt_bp, completion_bt], axis=1)
    valid = jnp.concatenate([prompt_mask_bp, completion_mask_bt], axis=1)
    h, _ = model.model(tokens, positions_from_mask(valid), padded_causal(valid))
    return h[:, p - 1 : -1]


def _logp_entropy(logits_ntv, tokens_nt):
    """log-softmax at `tokens_nt` and the entropy, from float32 logits, without forming
    the `[N, T, V]` log-softmax: one logsumexp and one gather."""
    lse = jax.nn.logsumexp(logits_ntv, axis=-1)
    picked = jnp.take_along_axis(logits_ntv, tokens_nt[..., None], axis=-1)[..., 0]
    p = jnp.exp(logits_ntv - lse[..., None])
    # A masked token (logit -inf) has p = 0 and adds nothing; replacing its logit before
    # the product keeps the gradient finite (0 * -inf is nan in the backward pass too).
    mean = jnp.sum(p * jnp.where(jnp.isfinite(logits_ntv), logits_ntv, 0.0), axis=-1)
    return picked - lse, lse - mean


def token_logp_entropy(model, h_ntd, tokens_nt, temperature=1.0, chunk: int = 0):
    """`(log π(token), entropy)` `[N, T]` float32 under `softmax(lm_head(h) / temperature)`.

    `chunk` = 0: one pass over the whole `[N, T, V]` logits. Otherwise `chunk` positions
    at a time (`lax.map` over the sequence; one chunk when `chunk` >= T), each chunk's
    logits recomputed in the backward pass (`jax.checkpoint`), so neither pass holds more
    than `[N, chunk, V]` logits: with a 152k vocabulary the logits tensor is most of an
    RL step's memory. The checkpoint also makes the forward under `grad` the same program
    as the forward alone: the same numbers bit for bit (the reference pass and the
    learner, `train.rl_step`), which the plain pass does not promise.
    `token_logp` and `losses.entropy_from_logits` give the same numbers up to float
    rounding (log π = logit − logsumexp here instead of a log-softmax)."""
    temp = jnp.where(jnp.asarray(temperature, jnp.float32) > 0, temperature, 1.0)
    if not chunk:
        return _logp_entropy(_lm_head(model, h_ntd) / temp, tokens_nt)
    return map_position_chunks(
        lambda h_c, tok_c: _logp_entropy(_lm_head(model, h_c) / temp, tok_c),
        h_ntd,
        tokens_nt,
        chunk,
    )


def map_position_chunks(fn, h_ntd, tokens_nt, chunk: int):
    """`fn(h [N, c, D], tokens [N, c]) -> tuple of [N, c]` over `chunk` positions at a
    time (`lax.map`; one chunk when `chunk` >= T), each chunk under `jax.checkpoint`, so
    neither pass holds more than one chunk of whatever `fn` forms inside (the `[N, c, V]`
    logits); returns the tuple joined back to `[N, T]`."""
    n, t, _ = h_ntd.shape
    chunk = min(chunk, t)
    k = -(-t // chunk)
    pad = k * chunk - t
    h = jnp.pad(h_ntd, ((0, 0), (0, pad), (0, 0)))
    tok = jnp.pad(tokens_nt, ((0, 0), (0, pad)))
    split = lambda x: jnp.moveaxis(x.reshape(n, k, chunk, *x.shape[2:]), 1, 0)

    @jax.checkpoint
    def one(xs):
        return fn(*xs)

    out = jax.lax.map(one, (split(h), split(tok)))
    join = lambda y: jnp.moveaxis(y, 0, 1).reshape(n, k * chunk)[:, :t]
    return tuple(join(y) for y in out)


def sequence_logits(model, prompt_bp, prompt_mask_bp, completion_bt, completion_mask_bt):
    """Runs the model on prompt ++ completion; returns logits predicting each completion token.

    Returns `[B, T, V]`: row t holds the logits that predicted `completion_bt[:, t]`.
    """
    p = prompt_bp.shape[1]
    tokens = jnp.concatenate([prompt_bp, completion_bt], axis=1)
    valid = jnp.concatenate([prompt_mask_bp, completion_mask_bt], axis=1)
    logits, _ = model(tokens, positions_from_mask(valid), padded_causal(valid))
    return logits[:, p - 1 : -1]


def grouped_hidden(decoder, prompt_up, prompt_mask_up, completion_nt, completion_mask_nt):
    """Hidden states predicting each completion token, each prompt run once for its group.

    `prompt_up` holds U distinct prompts; completion rows `[u·G, (u+1)·G)` continue
    prompt u (N = U·G rows). Equal to running the decoder on every prompt ++ completion
    row (as `sequence_logits` does; up to float summation order), but the prompt's P
    positions are computed once per group instead of G times: the prompt pass fills a
    KV cache that the G completions of its group attend to. Differentiable.

    `decoder`: a `Decoder` (the policy's `model.model` or the critic's). Returns
    `[N, T, D]`: row t is the state that predicts `completion_nt[:, t]` (the prompt's
    last position for t = 0, the completion's token t - 1 after).
    """
    u, p = prompt_up.shape
    n, t = completion_nt.shape
    if n % u:
        raise ValueError(f"{n} completion rows are not whole groups of {u} prompts")
    g = n // u
    cache = init_cache(decoder.cfg, u, p)
    h_upd, cache = decoder(
        prompt_up,
        positions_from_mask(prompt_mask_up),
        padded_causal(prompt_mask_up),
        cache,
        0,
        train=True,
    )
    first_n1d = jnp.repeat(h_upd[:, -1:], g, axis=0)
    if t == 1:
        return first_n1d
    # The completion's tokens 0..T-2 (token T-1 predicts nothing) over the group's cache;
    # all T where only that makes the lengths even for cuDNN's flash attention (chosen by
    # model.attention=auto on a GPU or set: `attention_impl`; its masked kernel has no
    # backward pass for odd lengths): the last position's state is dropped, and causal
    # attention keeps it out of every other row.
    whole = attention_impl(decoder.cfg, t, p + t) == "cudnn" and t % 2 == 0 and p % 2 == 0
    m = t if whole else t - 1
    cache = extend_cache(jax.tree.map(lambda x: jnp.repeat(x, g, axis=0), cache), p + m)
    valid = jnp.concatenate(
        [jnp.repeat(prompt_mask_up, g, axis=0), completion_mask_nt[:, :m]], axis=1
    )
    h_nld, _ = decoder(
        completion_nt[:, :m],
        positions_from_mask(valid)[:, p:],
        padded_causal(valid, p),
        cache,
        p,
        train=True,
    )
    return jnp.concatenate([first_n1d, h_nld[:, : t - 1]], axis=1)


def grouped_sequence_logits(model, prompt_up, prompt_mask_up, completion_nt, completion_mask_nt):
    """`sequence_logits` for completions that come in groups sharing a prompt
    (`grouped_hidden`): `[N, T, V]`, row t predicting `completion_nt[:, t]`."""
    h = grouped_hidden(model.model, prompt_up, prompt_mask_up, completion_nt, completion_mask_nt)
    return _lm_head(model, h)


def token_logp(logits_btv, tokens_bt, temperature=1.0):
    """log π(token) under `softmax(logits / temperature)`, float32."""
    logp = _scaled_logp(logits_btv, jnp.asarray(temperature, jnp.float32))
    return jnp.take_along_axis(logp, tokens_bt[..., None], axis=-1)[..., 0]
