"""Model definitions (Flax NNX)."""

from r1jax.models.hf import load_pretrained, save_pretrained
from r1jax.models.lora import LoraConfig, apply_lora, init_lora
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
    "LoraConfig",
    "ModelConfig",
    "ValueModel",
    "apply_lora",
    "causal_mask",
    "init_cache",
    "init_lora",
    "load_pretrained",
    "positions_from_mask",
    "rope",
    "save_pretrained",
]
