"""Model definitions (Flax NNX)."""

from r1jax.models.hf import load_pretrained, save_pretrained
from r1jax.models.transformer import (
    CausalLM,
    Decoder,
    KVCache,
    ModelConfig,
    ValueModel,
    causal_mask,
    init_cache,
    positions_from_mask,
    rope,
)

__all__ = [
    "CausalLM",
    "Decoder",
    "KVCache",
    "ModelConfig",
    "ValueModel",
    "causal_mask",
    "init_cache",
    "load_pretrained",
    "positions_from_mask",
    "rope",
    "save_pretrained",
]
