"""Word-level tokenizer with one global vocabulary for every text game.

Text is lowercased and split into runs of letters/digits and single punctuation marks
(``"You can't go."`` -> ``you can ' t go .``). The vocabulary is every word of
:mod:`scalezero.tasks.text.lexicon` (templates, name pools, numbers ``0..MAX_NUMBER``), sorted,
after two reserved ids: ``0`` = padding, ``1`` = unknown word. It depends on nothing but that
module, so it is identical on every machine, and one text encoder serves every game of a suite.

Observations are ``int64 [OBS_LEN]`` arrays: the tokens of the text, truncated to ``OBS_LEN``
and right-padded with 0.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

import numpy as np

from scalezero.tasks.text import lexicon

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"

OBS_LEN = 128
"""Tokens per observation. The longest observation the four suite games produce in random play
is well below this (a test checks it), so truncation only guards against future games."""

_TOKEN_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into words and single punctuation marks."""
    return _TOKEN_RE.findall(text.lower())


def _template_literals(template: str) -> str:
    """The literal text of a ``str.format`` template (its fields removed)."""
    return " ".join(literal for literal, _, _, _ in string.Formatter().parse(template))


def _lexicon_words() -> list[str]:
    """Every token the engine can produce, sorted (the vocabulary after the reserved ids)."""
    words: set[str] = set()
    texts: list[str] = [
        _template_literals(t) for t in (*lexicon.SENTENCES.values(), *lexicon.COMMANDS.values(), *lexicon.NAMES.values())
    ]
    texts += list(lexicon.DIRECTIONS) + list(lexicon.ROOM_NAMES) + list(lexicon.ITEM_ADJECTIVES) + list(lexicon.ITEM_NOUNS)
    texts += list(lexicon.KEY_MATERIALS) + list(lexicon.CONTAINER_ADJECTIVES) + list(lexicon.CONTAINER_NOUNS)
    texts += list(lexicon.DOOR_MATERIALS) + list(lexicon.FILLER_WORDS) + [str(n) for n in range(lexicon.MAX_NUMBER + 1)]
    for text in texts:
        words.update(tokenize(text))
    return sorted(words)


VOCAB: tuple[str, ...] = (PAD_TOKEN, UNK_TOKEN, *_lexicon_words())
"""Id -> token. Ids 0 and 1 are padding and unknown."""
VOCAB_SIZE: int = len(VOCAB)
"""Number of token ids (the text encoder's embedding table size)."""
WORD_TO_ID: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}


@lru_cache(maxsize=1 << 16)
def encode_sentence(text: str) -> tuple[int, ...]:
    """Token ids of one sentence, unpadded (cached: the games repeat a finite set of sentences)."""
    return tuple(WORD_TO_ID.get(token, UNK_ID) for token in tokenize(text))


def encode(text: str | list[str], length: int = OBS_LEN) -> np.ndarray:
    """``int64 [length]`` ids of ``text`` (a string or a list of sentences), truncated to
    ``length`` and right-padded with :data:`PAD_ID`."""
    sentences = [text] if isinstance(text, str) else text
    out = np.zeros(length, dtype=np.int64)
    pos = 0
    for sentence in sentences:
        ids = encode_sentence(sentence)
        take = min(len(ids), length - pos)
        out[pos : pos + take] = ids[:take]
        pos += take
        if pos >= length:
            break
    return out


def decode(ids: np.ndarray | list[int]) -> str:
    """Tokens of ``ids`` joined by spaces, padding dropped (lowercase; for reading and tests)."""
    words = []
    for i in np.asarray(ids).tolist():
        if i == PAD_ID:
            continue
        words.append(VOCAB[i] if 0 <= i < VOCAB_SIZE else UNK_TOKEN)
    return " ".join(words)
