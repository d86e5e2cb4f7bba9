"""GRPO on GSM8K from a pretrained Qwen2/Llama checkpoint (issue 5).

  r1jax-train --config=experiments/gsm8k_qwen.py --workdir=runs/gsm8k_qwen \\
      --config.pretrained=/path/to/Qwen2.5-0.5B-Instruct --config.task_kwargs.path=DIR
  r1jax-eval --workdir=runs/gsm8k_qwen --k=8

The fields and their comments live in `r1jax/configs/gsm8k_qwen.py`.
"""

from r1jax.configs.gsm8k_qwen import get_config  # noqa: F401
