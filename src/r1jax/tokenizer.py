"""The tokenizer interface (`Tokenizer`) and the character-level tokenizer of the default.

Everything the trainer, the sampler, the reward bridge and the evaluator need from a
tokenizer is the `Tokenizer` protocol: `CharTokenizer` (here) and
`hf_tokenizer.HFTokenizer` (a Hugging Face `tokenizer.json`) implement it, and the
trainer reads the special ids from the tokenizer it built (`eos_id`, `pad_id`), never
from module constants.

Token ids: 0 = PAD, 1 = BOS (unused by the default task, kept for real-model parity),
2 = EOS, 3 = UNK, then the printable ASCII characters plus newline, then the R1 tags
``<think>``, ``</think>``, ``<answer>``, ``</answer>`` as one token each (as in the
tokenizers of R1-style models; they take ids of the padding, so the vocabulary size is
unchanged). The vocabulary is padded to a multiple of 8 so embedding and logit matrices
tile well.

Batch helpers return NumPy arrays with static shapes (prompts left-padded so every
prompt ends at the same column, which keeps the sampler's KV-cache index uniform).
"""

from __future__ import annotations

import re
import string
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
_FIRST_CHAR_ID = 4
SPECIAL_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")  # one token each
_SPECIAL_RE = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))


@runtime_checkable
class Tokenizer(Protocol):
    """What r1jax needs from a tokenizer (structural: no base class needed)."""

    vocab_size: int  # ids are in [0, vocab_size)
    eos_id: int  # ends a completion; decode stops there
    pad_id: int  # fills static shapes; decode skips it
    bos_id: (
        int | None
    )  # prepended by `encode(..., add_special_tokens=True)` where the model wants it

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text up to the first EOS, PAD dropped."""
        ...

    def decode_batch(self, ids_bt: np.ndarray) -> list[str]: ...

    def decode_with_offsets(self, ids: Sequence[int]) -> tuple[str, np.ndarray]:
        """`decode` plus, per character, the index of the token that wrote it, and one
        final entry: the position after the text (where end-of-text rewards go)."""
        ...

    def encode_left_padded(
        self, texts: Sequence[str], length: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Prompts right-aligned in `[B, length]`: (tokens, mask)."""
        ...

    def encode_right_padded(
        self, texts: Sequence[str], length: int, add_eos: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Completions left-aligned in `[B, length]` (EOS appended): (tokens, mask)."""
        ...


class CharTokenizer:
    """Maps characters to ids; `decode` stops at EOS and drops PAD."""

    def __init__(self, chars: str | None = None):
        if chars is None:
            chars = "\n" + "".join(c for c in string.printable if c not in "\t\r\x0b\x0c\n")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: duplicate characters in the alphabet")
        self.chars = chars
        self._to_id = {c: i + _FIRST_CHAR_ID for i, c in enumerate(chars)}
        self._to_char = {i: c for c, i in self._to_id.items()}
        n = _FIRST_CHAR_ID + len(chars)
        self._special = {t: n + k for k, t in enumerate(SPECIAL_TOKENS)}
        self._to_char.update({i: t for t, i in self._special.items()})
        n += len(SPECIAL_TOKENS)
        self.vocab_size = (n + 7) // 8 * 8
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``: one per character, one per R1 tag (``SPECIAL_TOKENS``)."""
        if "<" not in text:
            return [self._to_id.get(c, UNK_ID) for c in text]
        ids, pos = [], 0
        for m in _SPECIAL_RE.finditer(text):
            ids += [self._to_id.get(c, UNK_ID) for c in text[pos : m.start()]]
            ids.append(self._special[m.group(0)])
            pos = m.end()
        return ids + [self._to_id.get(c, UNK_ID) for c in text[pos:]]

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i == PAD_ID:
                continue
            out.append(self._to_char.get(i, "\ufffd"))
        return "".join(out)

    def decode_with_offsets(self, ids: Sequence[int]) -> tuple[str, np.ndarray]:
        """``decode`` plus, for each character, the index of the token that wrote it.

        The offsets array has one extra final entry: the position after the text (the
        EOS token, or the last token when there is none), where end-of-text credit goes.
        """
        ids = [int(i) for i in ids]
        out, where = [], []
        end = max(len(ids) - 1, 0)
        for t, i in enumerate(ids):
            if i == EOS_ID:
                end = t
                break
            if i == PAD_ID:
                continue
            piece = self._to_char.get(i, "\ufffd")
            out.append(piece)
            where += [t] * len(piece)  # a tag token writes several characters
        where.append(end)
        return "".join(out), np.asarray(where, np.int32)

    def decode_batch(self, ids_bt: np.ndarray) -> list[str]:
        return [self.decode(row) for row in np.asarray(ids_bt)]

    def encode_left_padded(
        self, texts: Sequence[str], length: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encodes prompts right-aligned in `[B, length]`; returns (tokens, mask)."""
        return left_pad(texts, [self.encode(t) for t in texts], length, PAD_ID)

    def encode_right_padded(
        self, texts: Sequence[str], length: int, add_eos: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encodes completions left-aligned in `[B, length]` (EOS appended); returns (tokens, mask)."""
        ids = [self.encode(text) + ([EOS_ID] if add_eos else []) for text in texts]
        return right_pad(texts, ids, length, PAD_ID)


def too_long(texts, id_lists, length: int, what: str, field: str, fix: str) -> None:
    """Raises the ValueError for texts over ``length`` tokens, naming the longest (so one
    change of ``config.<field>`` fits them all), how many are over, and the fix."""
    sizes = [len(ids) for ids in id_lists]
    over = sum(n > length for n in sizes)
    if not over:
        return
    k = int(np.argmax(sizes))
    raise ValueError(
        f"{what} of {sizes[k]} tokens exceeds {field}={length} ({over} of {len(sizes)} "
        f"{what}s here are over; the longest: {texts[k][:40]!r}...): raise "
        f"config.{field} to at least {sizes[k]} or {fix}"
    )


def right_pad(texts, id_lists, length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids left-aligned in `[B, length]` (completions); returns (tokens, mask).

    A completion longer than `length` raises, naming `config.max_new_tokens`."""
    fix = "shorten the task's reference solutions"
    too_long(texts, id_lists, length, "completion", "max_new_tokens", fix)
    tokens = np.full((len(texts), length), pad_id, np.int32)
    mask = np.zeros((len(texts), length), bool)
    for b, ids in enumerate(id_lists):
        tokens[b, : len(ids)] = ids
        mask[b, : len(ids)] = True
    return tokens, mask


def left_pad(texts, id_lists, length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids right-aligned in `[B, length]` (prompts); returns (tokens, mask).

    A prompt longer than `length` raises, naming `config.max_prompt_len`."""
    too_long(texts, id_lists, length, "prompt", "max_prompt_len", "shorten the task's prompts")
    tokens = np.full((len(texts), length), pad_id, np.int32)
    mask = np.zeros((len(texts), length), bool)
    for b, ids in enumerate(id_lists):
        if len(ids):
            tokens[b, length - len(ids) :] = ids
            mask[b, length - len(ids) :] = True
    return tokens, mask
