"""HFTokenizer on tiny tokenizer.json files built here with the `tokenizers` library."""

import json

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from r1jax.hf_tokenizer import HFTokenizer, chatml

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
    "<think> She makes 9 * 2 = 18 dollars. </think> <answer> 18 </answer>",
    "How many eggs does she have? The answer is 18.",
] * 5
TEXTS = [
    "Janet sells 9 eggs.",
    "<think>x</think>\n<answer>18</answer>",
    "Héllo wörld 😀 ünïcode — “quotes”",
    "  leading and  double spaces\n\nnewlines ",
    "<|im_start|>user\nhi<|im_end|>",
]


def _byte_level_bpe():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def _sentencepiece_like():
    """Llama-2 style: Metaspace, byte fallback for characters outside the vocabulary."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    bytes_ = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"] + bytes_, show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def _save(tmp_path, tok, config=None, name="tok"):
    d = tmp_path / name
    d.mkdir()
    tok.save(str(d / "tokenizer.json"))
    if config is not None:
        (d / "tokenizer_config.json").write_text(json.dumps(config))
    return d


@pytest.fixture
def bpe_dir(tmp_path):
    return _save(tmp_path, _byte_level_bpe(), {"eos_token": "<|endoftext|>", "pad_token": None})


@pytest.fixture
def tok(bpe_dir):
    return HFTokenizer.from_pretrained(bpe_dir)


def test_special_ids_and_vocab(tok):
    assert tok.eos_token == "<|endoftext|>" and tok.eos_id == 0
    assert tok.pad_id == tok.eos_id  # pad_token null: PAD is EOS
    assert tok.bos_id is None
    assert tok.vocab_size == 320
    assert "vocab_size=320" in repr(tok)


def test_round_trip(tok):
    for text in TEXTS:
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
    # an added token spelled in the text encodes to its id (a rendered chat template)
    assert tok.encode("<|im_start|>")[0] == 1


def test_decode_stops_at_eos_and_skips_padding(tmp_path, tok):
    a, b = tok.encode("ab"), tok.encode("cd")
    # pad == eos: a leading run is left padding, the first one after the text is EOS
    assert tok.decode([tok.pad_id] * 3 + a + [tok.eos_id] + b) == "ab"
    assert tok.decode([tok.eos_id] * 4) == ""
    # distinct pad: dropped anywhere; EOS stops even at the start
    d = _save(
        tmp_path, _byte_level_bpe(), {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, "p"
    )
    t2 = HFTokenizer.from_pretrained(d)
    assert (t2.pad_id, t2.eos_id) == (0, 2)
    assert t2.decode([0] + a + [0] + b + [2] + a) == "abcd"
    assert t2.decode([2] + a) == ""
    assert t2.decode_batch(np.array([[0, *a, 2], [*b, 2, 0]])) == ["ab", "cd"]


def test_padding_shapes_and_errors(tok):
    texts = ["Janet sells 9 eggs.", "ab"]
    p, pm = tok.encode_left_padded(texts, 24)
    n = [len(tok.encode(t)) for t in texts]
    assert p.shape == (2, 24) and p.dtype == np.int32 and pm.sum(1).tolist() == n
    assert (p[1, : 24 - n[1]] == tok.pad_id).all() and not pm[1, : 24 - n[1]].any()
    assert tok.decode_batch(p) == texts
    r, rm = tok.encode_right_padded(texts, 24)
    assert r[0, : n[0] + 1].tolist() == tok.encode(texts[0]) + [tok.eos_id]
    assert rm.sum(1).tolist() == [k + 1 for k in n]
    r2, rm2 = tok.encode_right_padded(texts, 24, add_eos=False)
    assert rm2.sum(1).tolist() == n and tok.decode_batch(r2) == texts
    with pytest.raises(ValueError, match="max_prompt_len"):
        tok.encode_left_padded(texts, n[0] - 1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        tok.encode_right_padded(texts, n[0])  # + EOS does not fit


def test_padding_ignores_truncation_stored_in_tokenizer_json(tmp_path):
    raw = _byte_level_bpe()
    raw.enable_truncation(2)
    raw.enable_padding(length=50)
    t = HFTokenizer.from_pretrained(_save(tmp_path, raw, {"eos_token": "<|endoftext|>"}))
    assert t.decode(t.encode(TEXTS[0])) == TEXTS[0]


def _check_offsets(t, ids, eos_at=None):
    text, where = t.decode_with_offsets(ids)
    assert text == t.decode(ids)
    assert len(where) == len(text) + 1 and where.dtype == np.int32
    assert (np.diff(where) >= 0).all()
    content = [k for k, i in enumerate(ids) if i not in (t.pad_id, t.eos_id)]
    if eos_at is not None:
        content = [k for k in content if k < eos_at]
    assert where[-1] == (eos_at if eos_at is not None else len(ids) - 1)
    for c in range(len(text)):
        k = int(where[c])
        upto = [ids[j] for j in content if j <= k]
        before = [ids[j] for j in content if j < k]
        # token k completes character c: the text through k has it, the text before not
        assert t._text(upto)[: c + 1] == text[: c + 1]
        assert t._text(before)[: c + 1] != text[: c + 1]
    return text, where


@pytest.mark.parametrize("kind", ["byte_level", "sentencepiece"])
def test_decode_with_offsets(tmp_path, kind):
    raw = _byte_level_bpe() if kind == "byte_level" else _sentencepiece_like()
    t = HFTokenizer.from_pretrained(
        _save(
            tmp_path,
            raw,
            {"eos_token": "</s>"} if kind != "byte_level" else {"eos_token": "<|endoftext|>"},
        )
    )
    for text in TEXTS:
        ids = t.encode(text)
        got, where = _check_offsets(t, ids + [t.eos_id, t.eos_id], eos_at=len(ids))
        assert got == text
        _check_offsets(t, ids)  # truncated: end credit on the last token
    # a multi-byte character split over byte tokens belongs to the token completing it
    ids = t.encode("😀")
    assert len(ids) > 1
    text, where = t.decode_with_offsets(ids + [t.eos_id])
    assert text == "😀" and where.tolist() == [len(ids) - 1, len(ids)]
    # cut inside the character: the replacement char goes to the last token
    text, where = t.decode_with_offsets(ids[:-1])
    assert text == t._text(ids[:-1]) and where[-1] == len(ids) - 2
    text, where = t.decode_with_offsets([])
    assert text == "" and where.tolist() == [0]


def test_offsets_prefix_fallback_agrees_with_stream(tok):
    ids = tok.encode(TEXTS[2] + TEXTS[1])
    text = tok._text(ids)
    assert tok._stream_owners(ids, text) == tok._prefix_owners(ids, text)


def test_offsets_feed_token_rewards(tok):
    from r1jax.rewards import dense

    ids = tok.encode("<think>a</think><answer>7</answer>") + [tok.eos_id, tok.pad_id]
    text, where = tok.decode_with_offsets(ids)
    row = dense.token_rewards([(len(text), 1.0)], where, len(ids))
    assert row[len(ids) - 2] == 1.0 and row.sum() == 1.0  # end credit on the EOS


def test_chat_template_fallback_is_chatml(tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
    assert tok.chat_template is None
    assert tok.apply_chat_template(msgs) == want == chatml(msgs)
    assert tok.apply_chat_template(msgs, add_generation_prompt=True) == (
        want + "<|im_start|>assistant\n"
    )
    assert tok.decode(tok.encode(want)) == want


# A small Qwen-like template using the features transformers provides.
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('bad role ' + m['role']) }}{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if tools %}{{ tools | tojson }}\n{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_chat_template_from_config_and_file(tmp_path):
    pytest.importorskip("jinja2")
    d = _save(
        tmp_path,
        _byte_level_bpe(),
        {"eos_token": "<|im_end|>", "bos_token": "<|endoftext|>", "chat_template": TEMPLATE},
    )
    t = HFTokenizer.from_pretrained(d)
    msgs = [{"role": "user", "content": "é & <b>"}]
    got = t.apply_chat_template(msgs, add_generation_prompt=True, tools=[{"name": "é"}])
    assert got == (
        '<|endoftext|><|im_start|>user\né & <b><|im_end|>\n[{"name": "é"}]\n<|im_start|>assistant\n'
    )
    with pytest.raises(Exception, match="bad role tool"):
        t.apply_chat_template([{"role": "tool", "content": "x"}])
    (d / "chat_template.jinja").write_text(
        "{% for m in messages %}[{{ m['content'] }}]{% endfor %}"
    )
    assert HFTokenizer.from_pretrained(d).apply_chat_template(msgs) == "[é & <b>]"


def test_chat_template_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("jinja2")
    d = _save(tmp_path, _byte_level_bpe(), {"eos_token": "<|im_end|>", "chat_template": TEMPLATE})
    ours = HFTokenizer.from_pretrained(d)
    ref = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(d / "tokenizer.json"), eos_token="<|im_end|>", chat_template=TEMPLATE
    )
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q é"}]
    for gen in (False, True):
        want = ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
        assert ours.apply_chat_template(msgs, add_generation_prompt=gen) == want
    for text in TEXTS:
        assert ours.encode(text) == ref.encode(text, add_special_tokens=False)


def test_eos_fallback_and_overrides(tmp_path):
    d = _save(tmp_path, _byte_level_bpe())  # no tokenizer_config.json
    t = HFTokenizer.from_pretrained(d)
    assert t.eos_token == "<|endoftext|>" and t.pad_id == t.eos_id == 0
    t = HFTokenizer.from_pretrained(d, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    assert (t.eos_id, t.pad_id) == (2, 0)
    # AddedToken-style entries in tokenizer_config.json
    d2 = _save(tmp_path, _byte_level_bpe(), {"eos_token": {"content": "<|im_end|>"}}, "d2")
    assert HFTokenizer.from_pretrained(d2).eos_id == 2


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HFTokenizer.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        HFTokenizer.from_pretrained(tmp_path / "empty")
    d = _save(tmp_path, _byte_level_bpe(), {"eos_token": "<eos_missing>"}, "bad_eos")
    with pytest.raises(ValueError, match="eos_token '<eos_missing>' is not in the vocabulary"):
        HFTokenizer.from_pretrained(d)
    (d / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer_config.json"):
        HFTokenizer.from_pretrained(d)
    wl = Tokenizer(models.WordLevel({"a": 0, "b": 1}, unk_token="a"))
    with pytest.raises(ValueError, match="no EOS token"):
        HFTokenizer.from_pretrained(_save(tmp_path, wl, None, "wl"))


def test_word_level_without_decoder(tmp_path):
    """No decoder: tokens are joined by spaces; offsets still follow decode's text."""
    wl = Tokenizer(models.WordLevel({"<unk>": 0, "</s>": 1, "two": 2, "eggs": 3}, "<unk>"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    t = HFTokenizer.from_pretrained(_save(tmp_path, wl, None, "wl"))
    ids = t.encode("two eggs two")
    assert ids == [2, 3, 2] and t.decode(ids) == "two eggs two"
    _check_offsets(t, ids + [t.eos_id], eos_at=3)
