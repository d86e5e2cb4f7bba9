"""Score functions for tests and benchmarks of ``host.RewardPool``, and a misbehaving
verifier for fault tests of the whole reward path (not for training).

Worker processes start with ``spawn`` and import their ``score_fn`` by reference, so the
misbehaving functions the pool is tested against must live in an importable module;
keeping them inside the package makes them importable whatever pytest's import mode.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

from r1jax.rewards.verifier import EquationVerifier, Verdict

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


SLOW_S = 0.4  # FaultyVerifier sleeps this long on a completion holding SLOW


class FaultyVerifier(EquationVerifier):
    """``EquationVerifier`` that misbehaves on markers in the completion (fault tests of
    the reward path): ``HANG`` sleeps forever, ``CRASH`` SIGKILLs its reward worker,
    ``RAISE`` raises, ``SLOW`` sleeps ``SLOW_S`` s before verifying as usual."""

    def verify(self, completion: str, reference: str) -> Verdict:
        if "HANG" in completion:
            while True:
                time.sleep(3600)
        if "CRASH" in completion:
            if not multiprocessing.current_process().name.startswith("r1jax-reward"):
                raise RuntimeError("FaultyVerifier: CRASH only kills reward worker processes")
            os.kill(os.getpid(), signal.SIGKILL)
        if "RAISE" in completion:
            raise ValueError("FaultyVerifier was asked to raise")
        if "SLOW" in completion:
            time.sleep(SLOW_S)
        return super().verify(completion, reference)
