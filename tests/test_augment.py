"""Random-shift augmentation: the shift against a pixel-by-pixel reference, one shift per window
across its steps, the same view for the online and target networks, image tasks only."""

import numpy as np
import pytest
from tiny_run import filled_learner

from scalezero.config import ConfigError, config_from_dict
from scalezero.training.augment import draw_shifts, shift_windows


def _reference(obs: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    out = np.zeros_like(obs)
    h, w = obs.shape[-2:]
    for b in range(obs.shape[0]):
        dy, dx = shifts[b]
        for y in range(h):
            for x in range(w):
                if 0 <= y - dy < h and 0 <= x - dx < w:
                    out[b, :, :, y, x] = obs[b, :, :, y - dy, x - dx]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.bool_, np.uint8])
def test_shift_matches_a_pixel_by_pixel_reference(dtype):
    rng = np.random.default_rng(0)
    obs = (rng.random((40, 3, 2, 10, 10)) * 200).astype(dtype)
    shifts = draw_shifts(40, 2, rng)
    assert shifts.min() == -2 and shifts.max() == 2  # 40 draws of 5 values reach both ends
    got = shift_windows(obs, shifts)
    assert got.dtype == obs.dtype
    np.testing.assert_array_equal(got, _reference(obs, shifts))
    np.testing.assert_array_equal(shift_windows(obs, np.zeros((40, 2), dtype=int)), obs)
    far = np.tile([[10, 0]], (40, 1))  # shifted out of the frame entirely
    assert not shift_windows(obs, far).any()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="B, T, C, H, W"):
        shift_windows(np.zeros((2, 3, 4, 4)), np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="shifts must be"):
        shift_windows(np.zeros((2, 1, 1, 4, 4)), np.zeros((3, 2), dtype=int))
    with pytest.raises(ConfigError, match="train.augment_shift"):
        config_from_dict({"tasks": ["cartpole"], "train": {"augment_shift": -1}})


def test_learner_shifts_image_windows_once_for_both_networks():
    config = config_from_dict({
        "tasks": ["cartpole", "minatar-breakout"],
        "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8},
        "search": {"num_simulations": 4},
        "replay": {"unroll_steps": 3, "td_steps": 2},
        "train": {"num_envs": 4, "batch_size": 6, "context_steps": 2, "augment_shift": 1},
    })  # fmt: skip
    _, collector, learner = filled_learner(config, 12)
    batch = learner.sample(collector.replays, [0, 1])
    seen = []
    encode = learner._encode

    def spy(net, batch_, positions, shifted=None):
        seen.append((net, shifted))
        return encode(net, batch_, positions, shifted)

    learner._encode = spy
    learner.compute_losses(batch)
    (target_net, target_view), (online_net, online_view) = seen
    assert target_net is learner.target and online_net is learner.model
    assert online_view is target_view and set(target_view) == {1}  # the image task only
    original = batch.windows[1].obs
    shifted = target_view[1]
    assert shifted.shape == original.shape and not np.array_equal(shifted, original)
    # One translation per window, the same at every step: find it and check every step.
    for b in range(original.shape[0]):
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if np.array_equal(shifted[b : b + 1], shift_windows(original[b : b + 1], np.array([[dy, dx]])))]  # fmt: skip
        assert matches, f"window {b} is not one translation of its steps"
