"""Model definitions (Flax NNX).

`load_pretrained` / `save_pretrained` (Hugging Face I/O, `models.hf`) are re-exported
lazily: `models.hf` shards what it loads with `r1jax.parallel`, which builds on
`models.lora`, so importing a model module must not import `models.hf` first.
"""

import importlib

from r1jax.models.lora import LoraConfig, apply_lora, init_lora
from r1jax.models.transformer import (
    CausalLM,
    Decoder,
    KVCache,
    ModelConfig,
    PaddedCausal,
    ValueModel,
    causal_mask,
    init_cache,
    packed_causal,
    padded_causal,
    positions_from_mask,
    rope,
)

__all__ = [
    "CausalLM",
    "Decoder",
    "KVCache",
    "LoraConfig",
    "ModelConfig",
    "PaddedCausal",
    "ValueModel",
    "apply_lora",
    "causal_mask",
    "init_cache",
    "init_lora",
    "load_pretrained",
    "packed_causal",
    "padded_causal",
    "positions_from_mask",
    "rope",
    "save_pretrained",
]


def __getattr__(name):
    if name in ("load_pretrained", "save_pretrained"):
        return getattr(importlib.import_module("r1jax.models.hf"), name)
    raise AttributeError(f"module 'r1jax.models' has no attribute {name!r}")
