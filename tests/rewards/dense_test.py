"""Dense step rewards: positions, potential-based shaping, token placement."""

import numpy as np
import pytest

from r1jax.rewards import dense
from r1jax.tokenizer import EOS_ID, PAD_ID, CharTokenizer

GOOD = "3+4=7\n7*2=14\n#### 14"
BAD_SECOND = "3+4=7\n7*2=15\n15-1=14\n#### 14"


def test_step_ends_point_at_last_char_of_each_step():
    ends = dense.step_ends(BAD_SECOND)
    assert [BAD_SECOND[e] for e, _ in ends] == ["7", "5", "4"]
    assert [v for _, v in ends] == [True, False, True]


def test_step_ends_ignore_prose_and_the_answer_line():
    text = "we add\n  2+2=4  \n#### 4=4\n9=9"
    ends = dense.step_ends(text)
    assert len(ends) == 1 and text[ends[0][0]] == "4" and ends[0][1]


@pytest.mark.parametrize(
    "text,where",
    [(GOOD, len(GOOD)), (BAD_SECOND, BAD_SECOND.index("15") + 1), ("", 0), ("1+1=3\n2=2", 4)],
)
def test_shaping_penalises_first_wrong_step_or_the_end(text, where):
    assert dense.step_shaping(text, 0.3) == [(where, -0.3)]
    assert dense.step_shaping(text, 0.0) == []


def test_shaping_sums_to_the_same_constant_on_every_completion():
    # Potential-based: every completion's shaped return moves by exactly -alpha, so
    # padding with many true steps or stopping early cannot earn anything.
    texts = [GOOD, BAD_SECOND, "1=1\n" * 50 + "#### 7", "", "prose only", "2+2=4"]
    for t in texts:
        assert sum(r for _, r in dense.step_shaping(t, 0.25)) == pytest.approx(-0.25)


def test_token_rewards_land_on_the_token_that_wrote_the_char():
    tok = CharTokenizer()
    ids = tok.encode(BAD_SECOND) + [EOS_ID, PAD_ID, PAD_ID]
    text, offsets = tok.decode_with_offsets(ids)
    assert text == BAD_SECOND and len(offsets) == len(text) + 1
    row = dense.token_rewards(dense.step_shaping(text, 0.5), offsets, len(ids))
    assert row.shape == (len(ids),) and row.dtype == np.float32
    assert np.flatnonzero(row).tolist() == [BAD_SECOND.index("15") + 1]
    # No wrong step: the credit goes to the EOS token.
    ids = tok.encode(GOOD) + [EOS_ID, PAD_ID]
    text, offsets = tok.decode_with_offsets(ids)
    row = dense.token_rewards(dense.step_shaping(text, 0.5), offsets, len(ids))
    assert np.flatnonzero(row).tolist() == [len(GOOD)] and row[len(GOOD)] == -0.5


def test_offsets_skip_pads_and_fall_back_to_the_last_token_when_truncated():
    tok = CharTokenizer()
    ids = [PAD_ID] + tok.encode("1+1") + [PAD_ID] + tok.encode("=2")
    text, offsets = tok.decode_with_offsets(ids)
    assert text == "1+1=2"
    assert offsets.tolist() == [1, 2, 3, 5, 6, 6]
