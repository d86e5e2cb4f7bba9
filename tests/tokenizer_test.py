import pytest

from r1jax.tokenizer import EOS_ID, PAD_ID, UNK_ID, CharTokenizer


def test_roundtrip_and_vocab_padding():
    tok = CharTokenizer()
    text = "Ann has 7 pens.\n7+5=12\n#### 12"
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size % 8 == 0
    assert max(tok.encode(text)) < tok.vocab_size


def test_decode_stops_at_eos_and_skips_pad():
    tok = CharTokenizer()
    ids = [PAD_ID] + tok.encode("ab") + [EOS_ID] + tok.encode("cd")
    assert tok.decode(ids) == "ab"


def test_unknown_characters_map_to_unk():
    tok = CharTokenizer()
    assert tok.encode("é") == [UNK_ID]


def test_left_and_right_padding():
    tok = CharTokenizer()
    p, pm = tok.encode_left_padded(["ab", "abcd"], 5)
    assert p.shape == (2, 5) and pm.sum(1).tolist() == [2, 4]
    assert (p[0, :3] == PAD_ID).all() and tok.decode(p[0]) == "ab"
    t, tm = tok.encode_right_padded(["ab"], 4)
    assert t[0].tolist()[:3] == tok.encode("ab") + [EOS_ID] and tm.sum() == 3
    with pytest.raises(ValueError, match="max_prompt_len"):
        tok.encode_left_padded(["abcdef"], 3)
    with pytest.raises(ValueError, match="max_new_tokens"):
        tok.encode_right_padded(["abc"], 3)  # + EOS needs 4
