"""Score functions for tests and benchmarks of ``host.RewardPool`` (not for training).

Worker processes start with ``spawn`` and import their ``score_fn`` by reference, so the
misbehaving functions the pool is tested against must live in an importable module;
keeping them inside the package makes them importable whatever pytest's import mode.
"""

from __future__ import annotations

import os
import time

HANG = "<hang>"  # toy_score sleeps forever on this text
RAISE = "<raise>"  # toy_score raises ValueError on this text
CRASH = "<crash>"  # toy_score kills its own process on this text


def toy_score(text: str, reference: str = "") -> tuple[float, float]:
    """``(len(text), text == reference)``, misbehaving on the marker texts above."""
    if text == HANG:
        while True:
            time.sleep(3600)
    if text == RAISE:
        raise ValueError("toy_score was asked to raise")
    if text == CRASH:
        os._exit(3)
    return float(len(text)), float(text == reference)


def sleep_score(seconds: float, value: float) -> tuple[float]:
    """Sleeps ``seconds`` then returns ``(value,)``: to see parallelism in wall time."""
    time.sleep(seconds)
    return (float(value),)
