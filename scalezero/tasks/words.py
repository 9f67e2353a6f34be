"""Hashed word ids for text from games this package did not write (TextWorld, Jericho).

Such games use words no fixed vocabulary can list in advance, and nothing may be downloaded,
so each word goes to one of :data:`VOCAB_SIZE` ids by a stable hash (BLAKE2b of the word):
the same id on every machine and in every process, no table to ship, one text encoder for
every game. Ids 0 and 1 are reserved (padding, and
one spare), so hashed words take ``2..VOCAB_SIZE-1``; two words
share an id with probability about ``1/VOCAB_SIZE`` per pair, rare at the few hundred words
a game uses, and harmless when it happens (the encoder sees word order too).

Text is lowercased and split into runs of letters/digits and single punctuation marks
(``"You can't go."`` -> ``you can ' t go .``).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

PAD_ID = 0
"""Padding (observations are right-padded with it)."""
VOCAB_SIZE = 4096
"""Number of ids (padding and the reserved unknown id included)."""
FIRST_ID = 2

_TOKEN_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into words and single punctuation marks."""
    return _TOKEN_RE.findall(text.lower())


@lru_cache(maxsize=1 << 16)
def word_id(word: str) -> int:
    """The id of one (lowercase) word: ``2..VOCAB_SIZE-1``."""
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return FIRST_ID + int.from_bytes(digest, "little") % (VOCAB_SIZE - FIRST_ID)


def encode(text: str, length: int) -> np.ndarray:
    """``int64 [length]`` ids of the words of ``text``, truncated to ``length`` and right-padded
    with 0."""
    ids = [word_id(w) for w in tokenize(text)[:length]]
    out = np.zeros(length, dtype=np.int64)
    out[: len(ids)] = ids
    return out


def token_count(text: str) -> int:
    """How many tokens ``text`` has (to check that observations fit their length)."""
    return len(tokenize(text))
