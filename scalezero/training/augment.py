"""Random-shift augmentation of image windows (DrQ; EfficientZero and BBF train Atari with it).

Each window gets one random translation of up to ``k`` pixels in each direction, the same at
every step of the window, so the dynamics the world model learns stay those of the game: the
shifted next observation is the shift of the real next observation. Cells shifted in from
outside the frame are zero (empty MinAtar cells, black pixels). Vector and text observations
are never shifted.
"""

from __future__ import annotations

import numpy as np


def draw_shifts(windows: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``[windows, 2]`` integer (dy, dx) shifts, each uniform in ``[-k, k]``."""
    if k < 0:
        raise ValueError(f"draw_shifts: k must be >= 0, got {k}")
    return rng.integers(-k, k + 1, size=(windows, 2))


def shift_windows(obs: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Translate every window of images ``[B, T, C, H, W]`` by its own ``shifts[b] = (dy, dx)``.

    A positive ``dy`` moves content down (row ``r`` lands on row ``r + dy``), a positive ``dx``
    moves it right; what moves out of the frame is dropped and what enters is zero. Windows
    with the same shift are moved together (at most ``(2k + 1)^2`` groups), so the cost is a few
    array copies per batch, not one per window.
    """
    if obs.ndim != 5:
        raise ValueError(f"shift_windows: expected images [B, T, C, H, W], got shape {obs.shape}")
    if shifts.shape != (obs.shape[0], 2):
        raise ValueError(f"shift_windows: shifts must be [{obs.shape[0]}, 2], got {shifts.shape}")
    h, w = obs.shape[-2:]
    out = np.zeros_like(obs)
    for dy, dx in np.unique(shifts, axis=0):
        rows = np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
        if abs(dy) >= h or abs(dx) >= w:
            continue  # everything moved out of the frame
        src_y, dst_y = _span(int(dy), h)
        src_x, dst_x = _span(int(dx), w)
        out[rows, ..., dst_y, dst_x] = obs[rows, ..., src_y, src_x]
    return out


def _span(d: int, n: int) -> tuple[slice, slice]:
    """Source and destination slices of a length-``n`` axis moved by ``d``."""
    if d >= 0:
        return slice(0, n - d), slice(d, n)
    return slice(-d, n), slice(0, n + d)
