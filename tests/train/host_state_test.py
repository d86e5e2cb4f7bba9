"""Each process's host reward state goes into the checkpoint and comes back to the same
process (per-shard verification grows different novelty trees on each host)."""

import jax
import pytest

from r1jax.configs.arith_tiny import get_config
from r1jax.train import loop
from r1jax.train.experiment import Experiment


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    c = get_config("smoke")
    c.reward.num_workers = 0
    e = Experiment(c, str(tmp_path_factory.mktemp("w")))
    yield e
    e.close()


def _state(exp, key: str, pool_items: int) -> dict:
    exp.host_reward.novelty.load_state_dict(
        exp.host_reward.novelty.__class__().state_dict()  # empty
    )
    exp.host_reward.novelty.score_group(key, [((f"{key}=1",), True)])
    return {"reward": exp.host_reward.state_dict(), "pool": {"items": pool_items}}


@pytest.mark.parametrize("process", [0, 1])
def test_each_process_restores_its_own_host_state(exp, monkeypatch, process):
    states = [_state(exp, "prompt of process 0", 10), _state(exp, "prompt of process 1", 20)]
    assert states[0] != states[1]
    monkeypatch.setattr(jax, "process_index", lambda: process)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    loop._load_host_state(exp, {"host_states": states})
    assert exp.host_reward.state_dict() == states[process]["reward"]
    assert exp.pool.stats["items"] == states[process]["pool"]["items"]


def test_a_single_process_checkpoint_of_the_older_format_loads(exp):
    old = _state(exp, "older", 0)["reward"]
    exp.host_reward.novelty.load_state_dict(exp.host_reward.novelty.__class__().state_dict())
    loop._load_host_state(exp, {"host_reward": old})
    assert exp.host_reward.state_dict() == old


def test_one_process_gathers_its_own_state(exp):
    assert loop.gather_json({"a": [1, 2]}) == [{"a": [1, 2]}]
