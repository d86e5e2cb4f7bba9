"""Hugging Face fast tokenizers (``tokenizer.json``) behind the `CharTokenizer` interface.

``HFTokenizer.from_pretrained(dir)`` reads ``dir/tokenizer.json`` with the ``tokenizers``
library, and ``dir/tokenizer_config.json`` (when present) for the ``eos_token``,
``pad_token`` and ``bos_token`` and the ``chat_template`` (a ``dir/chat_template.jinja``
file, the newer layout, wins over the config's string). It offers what the trainer
calls on ``CharTokenizer``: ``encode``, ``decode``, ``decode_batch``,
``decode_with_offsets``, ``encode_left_padded``, ``encode_right_padded``,
``vocab_size``, ``eos_id``/``pad_id``/``bos_id``, plus ``apply_chat_template``.

Conventions (the same as ``CharTokenizer``'s):

* ``encode`` adds no special tokens (no BOS): prompts are encoded as written. Text that
  spells an added token (``<|im_start|>``) encodes to that token's id, so a rendered
  chat template encodes as the model expects. ``add_special_tokens=True`` runs the
  tokenizer's post-processor (e.g. Llama's BOS) for prompts that need it.
* ``decode`` stops at the first EOS and drops PAD; special tokens other than EOS/PAD
  stay in the text (a completion's ``<|im_start|>`` is what the reward sees). When
  ``pad_id == eos_id`` (common: many checkpoints have no pad token), a *leading* run of
  that id is left padding and is dropped, and the first one after the text is the EOS.
* ``decode_with_offsets`` (for completions, which are left-aligned) returns the text and,
  for each character, the index of the token that completed it, plus one final entry:
  the EOS position (or the last token when there is none). A character spread over
  several tokens (a byte-level BPE splitting a multi-byte UTF-8 character) belongs to
  the token that completes it. Offsets come from the library's streaming decoder (one
  step per token); if its pieces do not add up to ``decode``'s text, a per-prefix
  decode (quadratic, exact) is used instead.
* Truncation and padding stored in ``tokenizer.json`` are switched off: shapes come from
  ``encode_left_padded``/``encode_right_padded`` only, which raise ``ValueError`` when a
  text does not fit (naming the config field to raise).

``apply_chat_template(messages, add_generation_prompt=False)`` renders the checkpoint's
jinja template the way ``transformers`` does (sandboxed jinja2, ``trim_blocks``,
``lstrip_blocks``, ``raise_exception``, a non-escaping ``tojson``) when there is a
template and jinja2 is installed; without a template it uses ChatML (``CHATML``): for
each message ``"<|im_start|>{role}\\n{content}<|im_end|>\\n"``, then
``"<|im_start|>assistant\\n"`` when ``add_generation_prompt``. A template that exists but
cannot be rendered because jinja2 is missing is an ``ImportError``, never a silent
fallback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from r1jax.tokenizer import left_pad, right_pad

__all__ = ["CHATML", "HFTokenizer", "chatml"]

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
TEMPLATE_FILE = "chat_template.jinja"
# EOS candidates when tokenizer_config.json names none, in order of preference.
_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>")

CHATML = "<|im_start|>{role}\n{content}<|im_end|>\n"


def chatml(messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = False) -> str:
    """The fallback chat format: ``CHATML`` per message, then ``<|im_start|>assistant\\n``
    when ``add_generation_prompt``."""
    out = "".join(CHATML.format(role=m["role"], content=m["content"]) for m in messages)
    return out + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def _token_text(value) -> str | None:
    """A special token from tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _render_jinja(template: str, **context) -> str:
    try:
        import jinja2
        import jinja2.ext
        import jinja2.sandbox
    except ImportError as e:
        raise ImportError(
            "HFTokenizer.apply_chat_template: the tokenizer has a jinja chat_template but "
            "jinja2 is not installed (pip install jinja2)"
        ) from e

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt):
        import datetime

        return datetime.datetime.now().strftime(fmt)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template).render(**context)


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` with the trainer's tokenizer interface (module doc)."""

    def __init__(
        self,
        tokenizer,
        *,
        eos_token: str,
        pad_token: str | None = None,
        bos_token: str | None = None,
        chat_template: str | None = None,
        source: str = "<tokenizer>",
    ):
        self._tok = tokenizer
        self._tok.no_truncation()
        self._tok.no_padding()
        self.source = source

        def token_id(role, token):
            i = tokenizer.token_to_id(token)
            if i is None:
                raise ValueError(
                    f"HFTokenizer ({source}): {role} {token!r} is not in the vocabulary"
                )
            return int(i)

        self.eos_token = eos_token
        self.eos_id = token_id("eos_token", eos_token)
        self.pad_token = pad_token if pad_token is not None else eos_token
        self.pad_id = token_id("pad_token", self.pad_token)
        self.bos_token = bos_token
        self.bos_id = token_id("bos_token", bos_token) if bos_token is not None else None
        unk = tokenizer.token_to_id("<unk>")
        self.unk_id = None if unk is None else int(unk)
        self.chat_template = chat_template
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.vocab_size = max(
            tokenizer.get_vocab_size(with_added_tokens=True), max(vocab.values(), default=-1) + 1
        )

    def __repr__(self) -> str:
        return (
            f"HFTokenizer({self.source!r}, vocab_size={self.vocab_size}, "
            f"eos={self.eos_token!r}, pad={self.pad_token!r}, bos={self.bos_token!r})"
        )

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        eos_token: str | None = None,
        pad_token: str | None = None,
        bos_token: str | None = None,
    ) -> HFTokenizer:
        """Loads ``path/tokenizer.json`` (+ ``tokenizer_config.json``, ``chat_template.jinja``).

        ``eos_token``/``pad_token``/``bos_token`` override the config's. Without a config
        EOS is the first of ``<|endoftext|>``, ``</s>``, ``<|end_of_text|>``, ``<eos>``,
        ``<|im_end|>`` in the vocabulary; PAD defaults to EOS; BOS to none.
        """
        from tokenizers import Tokenizer

        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"HFTokenizer: tokenizer directory {path!r} does not exist")
        tok_file = os.path.join(path, TOKENIZER_FILE)
        if not os.path.isfile(tok_file):
            raise FileNotFoundError(
                f"HFTokenizer: {tok_file} not found; only fast tokenizers (tokenizer.json) "
                "are supported. A checkpoint with only tokenizer.model or vocab.json + "
                "merges.txt can be converted once with transformers: "
                "AutoTokenizer.from_pretrained(dir).save_pretrained(dir)"
            )
        try:
            tokenizer = Tokenizer.from_file(tok_file)
        except Exception as e:
            raise ValueError(f"HFTokenizer: cannot read {tok_file}: {e}") from e
        cfg: dict = {}
        cfg_file = os.path.join(path, CONFIG_FILE)
        if os.path.isfile(cfg_file):
            try:
                with open(cfg_file, encoding="utf-8") as f:
                    cfg = json.load(f)
            except (OSError, ValueError) as e:
                raise ValueError(f"HFTokenizer: cannot read {cfg_file}: {e}") from e
        template = cfg.get("chat_template")
        if isinstance(template, list):  # [{"name": ..., "template": ...}]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        template_file = os.path.join(path, TEMPLATE_FILE)
        if os.path.isfile(template_file):
            with open(template_file, encoding="utf-8") as f:
                template = f.read()

        eos = eos_token or _token_text(cfg.get("eos_token"))
        if eos is None:
            eos = next((t for t in _EOS_CANDIDATES if tokenizer.token_to_id(t) is not None), None)
        if eos is None:
            raise ValueError(
                f"HFTokenizer: no EOS token: {cfg_file} has no eos_token and none of "
                f"{_EOS_CANDIDATES} is in the vocabulary; pass eos_token=..."
            )
        return cls(
            tokenizer,
            eos_token=eos,
            pad_token=pad_token or _token_text(cfg.get("pad_token")),
            bos_token=bos_token or _token_text(cfg.get("bos_token")),
            chat_template=template if isinstance(template, str) and template else None,
            source=path,
        )

    # -- encoding ----------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def _encode_many(self, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
        encs = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return [list(e.ids) for e in encs]

    def encode_left_padded(
        self, texts: Sequence[str], length: int, add_special_tokens: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encodes prompts right-aligned in ``[B, length]``; returns (tokens, mask)."""
        ids = self._encode_many(texts, add_special_tokens)
        return left_pad(texts, ids, length, self.pad_id)

    def encode_right_padded(
        self, texts: Sequence[str], length: int, add_eos: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encodes completions left-aligned in ``[B, length]`` (EOS appended); returns
        (tokens, mask)."""
        eos = [self.eos_id] if add_eos else []
        ids = [ids + eos for ids in self._encode_many(texts, False)]
        return right_pad(texts, ids, length, self.pad_id)

    # -- decoding ----------------------------------------------------------------------

    def _text(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False) if ids else ""

    def decode(self, ids: Sequence[int]) -> str:
        eos, pad = self.eos_id, self.pad_id
        out: list[int] = []
        for i in ids:
            i = int(i)
            if i == eos and (out or eos != pad):
                break
            if i == pad:
                continue
            out.append(i)
        return self._text(out)

    def decode_batch(self, ids_bt: np.ndarray) -> list[str]:
        return [self.decode(row) for row in np.asarray(ids_bt)]

    def decode_with_offsets(self, ids: Sequence[int]) -> tuple[str, np.ndarray]:
        """``decode`` of a completion plus, for each character, the index of the token
        that completed it, and one final entry for the EOS (or last) position."""
        ids = [int(i) for i in ids]
        content, positions = [], []
        end = max(len(ids) - 1, 0)
        for t, i in enumerate(ids):
            if i == self.eos_id:
                end = t
                break
            if i == self.pad_id:
                continue
            content.append(i)
            positions.append(t)
        text, owner = self._char_owners(content)
        where = [positions[k] for k in owner] + [end]
        return text, np.asarray(where, np.int32)

    def _char_owners(self, ids: list[int]) -> tuple[str, list[int]]:
        """``(decode(ids), owner)``: ``owner[c]`` is the index in ``ids`` of the token that
        completed character ``c``."""
        text = self._text(ids)
        if not ids:
            return text, []
        owner = self._stream_owners(ids, text)
        if owner is None:
            owner = self._prefix_owners(ids, text)
        return text, owner

    def _stream_owners(self, ids: list[int], text: str) -> list[int] | None:
        """Owners from the streaming decoder, or ``None`` when its pieces are not a
        prefix of ``text`` (then the caller falls back to prefix decodes)."""
        try:
            from tokenizers.decoders import DecodeStream
        except ImportError:  # tokenizers < 0.21
            return None
        owner: list[int] = []
        pieces: list[str] = []
        try:
            stream = DecodeStream(skip_special_tokens=False)
            for k, i in enumerate(ids):
                piece = stream.step(self._tok, i)
                if piece:
                    pieces.append(piece)
                    owner += [k] * len(piece)
        except Exception:  # noqa: BLE001  (e.g. a decoder that is not prefix-stable)
            return None
        if not text.startswith("".join(pieces)):
            return None
        # What the stream still holds (a truncated multi-byte character) ends the text.
        owner += [len(ids) - 1] * (len(text) - len(owner))
        return owner

    def _prefix_owners(self, ids: list[int], text: str) -> list[int]:
        """Exact but quadratic: character ``c`` belongs to the first token whose prefix
        decode agrees with ``text`` on its first ``c + 1`` characters."""
        owner: list[int] = []
        for k in range(len(ids)):
            n = len(os.path.commonprefix([self._text(ids[: k + 1]), text]))
            if n > len(owner):
                owner += [k] * (n - len(owner))
        owner += [len(ids) - 1] * (len(text) - len(owner))
        return owner

    # -- chat --------------------------------------------------------------------------

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = False,
        **kwargs,
    ) -> str:
        """The conversation as text (module doc): the jinja template, or ChatML."""
        if self.chat_template is None:
            return chatml(messages, add_generation_prompt)
        return _render_jinja(
            self.chat_template,
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token,
            pad_token=self.pad_token,
            **kwargs,
        )
