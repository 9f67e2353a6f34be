"""Count-based exploration (``train.novelty_bonus``): a bonus for arriving in observations
seen rarely, added to the rewards collection stores.

Each task counts, over the whole run, how often each observation was arrived in (keyed by a
64-bit hash of its bytes); a step that arrives in an observation seen ``n`` times (this one
included) stores ``reward + bonus / sqrt(n)`` (Strehl & Littman's count bonus). Games whose
reward sits at the end of a long command sequence (text games) give random play nothing to
learn from; the bonus pays for reaching states the agent has not seen, and stops paying for
loops. The returns that evaluation and the logs report are the env's own.

A positive bonus on every step makes ending an episode cost all the bonus still to come, and
finishing a quest ends a text game: with the bonus at 0.3 the agent learned to stay in play
(BENCHMARKS.md, TextWorld with a novelty bonus). ``centered`` subtracts a running mean of the
bonuses (an exponential average over about the last ``1 / CENTER_RATE`` arrivals), so a step
pays only for being rarer than what the agent arrives in lately, and ending an episode costs
nothing on average.
"""

from __future__ import annotations

import hashlib

import numpy as np


def observation_keys(obs: np.ndarray) -> np.ndarray:
    """``[n, ...]`` observations -> ``[n]`` uint64 keys (BLAKE2b of each row's bytes)."""
    rows = np.ascontiguousarray(obs).reshape(obs.shape[0], -1)
    return np.asarray([int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little") for r in rows], dtype=np.uint64)


#: Weight of each arrival in the running mean of the centered bonus.
CENTER_RATE = 1e-3


class NoveltyCounter:
    """Visit counts of one task's observations, and the bonus they give (``centered``: minus the
    running mean of the bonuses before it)."""

    def __init__(self, scale: float, centered: bool = False) -> None:
        self.scale = float(scale)
        self.centered = centered
        self.counts: dict[int, int] = {}
        self.mean = 0.0

    def __len__(self) -> int:
        """Distinct observations arrived in so far."""
        return len(self.counts)

    def bonus(self, arrived: np.ndarray) -> np.ndarray:
        """Count every row of ``arrived [n, ...]`` (in order, so a repeat within the batch
        counts twice) and return ``[n]`` float32 bonuses ``scale / sqrt(count)`` (centered:
        less the running mean of the bonuses of the arrivals before each row)."""
        out = np.empty(arrived.shape[0], dtype=np.float32)
        for i, key in enumerate(observation_keys(arrived).tolist()):
            n = self.counts.get(key, 0) + 1
            self.counts[key] = n
            raw = self.scale / np.sqrt(n)
            out[i] = raw - self.mean if self.centered else raw
            self.mean += CENTER_RATE * (raw - self.mean)
        return out

    def state_arrays(self) -> dict[str, np.ndarray]:
        """``keys`` (uint64), ``counts`` (int64) and the running ``mean``, for checkpoints."""
        keys = np.asarray(list(self.counts), dtype=np.uint64)
        return {"keys": keys, "counts": np.asarray(list(self.counts.values()), dtype=np.int64), "mean": np.asarray(self.mean)}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts = dict(zip(arrays["keys"].tolist(), arrays["counts"].tolist()))
        self.mean = float(arrays["mean"]) if "mean" in arrays else 0.0  # absent before centering
