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


def test_too_long_names_the_longest_so_one_change_fits_all():
    # The audit raised max_prompt_len twice: the error named the first long prompt.
    tok = CharTokenizer()
    with pytest.raises(ValueError) as e:
        tok.encode_left_padded(["abcdef", "ab", "abcdefghij", "abcdefg"], 5)
    assert "prompt of 10 tokens exceeds max_prompt_len=5 (3 of 4 prompts" in str(e.value)
    assert "to at least 10" in str(e.value) and "'abcdefghij'" in str(e.value)
    with pytest.raises(ValueError, match=r"completion of 6 tokens .* at least 6"):
        tok.encode_right_padded(["abcd", "abcde"], 4)


def test_r1_tags_are_one_token_each_and_decode_back():
    tok = CharTokenizer()
    text = "<think>\n7*4=28\n</think>\n<answer>28</answer>"
    ids = tok.encode(text)
    assert len(ids) == len(text) - sum(
        len(t) - 1 for t in ("<think>", "</think>", "<answer>", "</answer>")
    )
    assert max(ids) < tok.vocab_size == 104  # the tags use the padding ids
    assert tok.decode(ids) == text
    decoded, owner = tok.decode_with_offsets(ids + [EOS_ID])
    assert decoded == text and len(owner) == len(text) + 1
    assert owner[: len("<think>")].tolist() == [0] * len("<think>")  # one token wrote them
    assert tok.encode("a<b>c") == [tok.encode(c)[0] for c in "a<b>c"]  # other "<" stay chars


def test_both_tokenizers_implement_the_protocol():
    from r1jax._testing import gsm8k_tokenizer, write_tokenizer
    from r1jax.hf_tokenizer import HFTokenizer
    from r1jax.tokenizer import Tokenizer

    assert isinstance(CharTokenizer(), Tokenizer)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(gsm8k_tokenizer(), d)
        assert isinstance(HFTokenizer.from_pretrained(d), Tokenizer)
