"""The embedded default experiment (layered arithmetic, tiny model, SFT then PPO).

  r1jax-train --workdir=runs/arith_tiny                                    # = no flags
  r1jax-train --config=experiments/arith_tiny.py --workdir=runs/arith_tiny
  r1jax-train --config=experiments/arith_tiny.py:smoke --workdir=/tmp/smoke   # seconds
  r1jax-train --config=experiments/arith_tiny.py:r1 --workdir=runs/arith_r1    # R1 format
  r1jax-train --config=experiments/arith_tiny.py --config.rl.algo=grpo --workdir=runs/grpo

The fields and their comments live in `r1jax/configs/arith_tiny.py` (shipped with the
package, so `r1jax-train` with no flags needs no checkout).
"""

from r1jax.configs.arith_tiny import get_config  # noqa: F401
