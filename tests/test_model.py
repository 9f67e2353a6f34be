"""Tests of scalezero.model: supports, encoders, transformer caching, world model, tree cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from scalezero.config import ModelConfig
from scalezero.model import (
    ILLEGAL_LOGIT,
    Head,
    SimNorm,
    Support,
    TreeSearchModel,
    WorldModel,
    inverse_value_transform,
    value_transform,
)
from scalezero.tasks.base import TaskSpec, make_layout

SMALL = {"embed_dim": 32, "num_layers": 2, "num_heads": 2, "dropout": 0.0, "simnorm_group": 8, "support_size": 10, "conv_channels": 8, "mlp_hidden": 32}


def vector_layout():
    """Two vector tasks: 3 and 5 actions, obs (4,) and (6,) -> padded (6,)."""
    return make_layout(
        [
            TaskSpec("vec_a", "vector", (4,), 3, target_return=1.0),
            TaskSpec("vec_b", "vector", (6,), 5, target_return=1.0),
        ]
    )


def mixed_layout():
    """A vector task and two image tasks with 4 and 7 channels (padded to 7)."""
    return make_layout(
        [
            TaskSpec("vec", "vector", (4,), 3, target_return=1.0),
            TaskSpec("img4", "image", (4, 10, 10), 5, target_return=1.0),
            TaskSpec("img7", "image", (7, 10, 10), 4, target_return=1.0),
        ]
    )


def randomize_heads(model: WorldModel, std: float = 0.3) -> None:
    """Heads start at zero; give them random last layers so outputs depend on the input."""
    for module in model.modules():
        if isinstance(module, Head):
            nn.init.normal_(module.net[-1].weight, std=std)
            nn.init.normal_(module.net[-1].bias, std=std)


def make_model(layout, window: int = 8, seed: int = 0, randomize: bool = True) -> WorldModel:
    torch.manual_seed(seed)
    model = WorldModel(ModelConfig(attention_window_steps=window, **SMALL), layout)
    if randomize:
        randomize_heads(model)
    return model.eval()


def random_latents(*shape: int, group: int = 8) -> torch.Tensor:
    return SimNorm(group)(torch.randn(*shape) * 2)


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ------------------------------------------------------------------ support
def test_value_transform_round_trip():
    x = torch.cat(
        [
            -torch.logspace(-6, 6, 200, dtype=torch.float64),
            torch.zeros(1, dtype=torch.float64),
            torch.logspace(-6, 6, 200, dtype=torch.float64),
        ]
    )
    for dtype in (torch.float64, torch.float32):
        xd = x.to(dtype)
        back = inverse_value_transform(value_transform(xd))
        rel = ((back - xd).abs() / xd.abs().clamp(min=1e-6)).max()
        assert rel < 1e-4, (dtype, rel)
    assert inverse_value_transform(value_transform(torch.zeros(3))).abs().max() == 0


@pytest.mark.parametrize("scale", [1.0, 0.2])
def test_two_hot_round_trip_and_shape(scale):
    support = Support(10, scale=scale)
    x = torch.linspace(-0.999 * support.max_scalar, 0.999 * support.max_scalar, 501)
    x = torch.cat([x, torch.tensor([0.0, 1.0, -1.0, 3.0])])
    two_hot = support.scalar_to_two_hot(x)
    assert two_hot.shape == (x.shape[0], 21)
    assert_close(two_hot.sum(-1), torch.ones(x.shape[0]), 1e-6)
    assert (two_hot.gt(0).sum(-1) <= 2).all()
    assert (two_hot >= 0).all()
    back = support.probs_to_scalar(two_hot)
    assert ((back - x).abs() / x.abs().clamp(min=1.0)).max() < 1e-4
    # Through logits (log of the two-hot; zeros become -inf, softmax restores them).
    back_logits = support.logits_to_scalar(two_hot.log())
    assert ((back_logits - x).abs() / x.abs().clamp(min=1.0)).max() < 1e-4
    # Out-of-range scalars clamp to the edge bin.
    edge = support.scalar_to_two_hot(torch.tensor([1e9, -1e9]))
    assert edge[0, -1] == 1 and edge[1, 0] == 1


def test_scaled_support_spreads_small_scalars_over_finer_bins():
    """Spacing 0.2: a reward of 1 (0.415 transformed) lies between bins 2 and 3 (0.4 and 0.6)
    with weights 0.925 / 0.075, by hand; the largest scalar is h^-1(10 * 0.2)."""
    support = Support(10, scale=0.2)
    two_hot = support.scalar_to_two_hot(torch.tensor([1.0]))[0]
    h1 = float(value_transform(torch.tensor(1.0)))
    hi = (h1 - 0.4) / 0.2
    assert_close(two_hot[10 + 2], torch.tensor(1.0 - hi), 1e-6)
    assert_close(two_hot[10 + 3], torch.tensor(hi), 1e-6)
    assert abs(support.max_scalar - float(inverse_value_transform(torch.tensor(2.0, dtype=torch.float64)))) < 1e-9
    with pytest.raises(ValueError, match="scale"):
        Support(10, scale=0.0)


@pytest.mark.parametrize("scale", [1.0, 0.2])
def test_two_hot_scalar_splits_in_scalar_units_and_reads_out_the_mean(scale):
    """Same bin pair as the transformed two-hot, weights by distance to the bins' scalar values
    (by hand for a reward of 1), round trip exact, and a 50/50 mixture of the targets of 0 and
    x reads out x / 2, where the transformed convention reads out h^-1(h(x) / 2), below 0.8 x / 2."""
    support = Support(10, scale=scale, target="two_hot_scalar")
    x = torch.linspace(-0.999 * support.max_scalar, 0.999 * support.max_scalar, 501)
    x = torch.cat([x, torch.tensor([0.0, 1.0, -1.0, 3.0, support.max_scalar])])
    target = support.scalar_to_target(x)
    assert_close(target.sum(-1), torch.ones(x.shape[0]), 1e-6)
    assert (target >= 0).all() and (target.gt(0).sum(-1) <= 2).all()
    assert ((target > 0) <= (Support(10, scale=scale).scalar_to_two_hot(x) > 0) | (target == 0)).all()
    assert ((support.probs_to_scalar(target) - x).abs() / x.abs().clamp(min=1.0)).max() < 1e-4
    one = support.scalar_to_target(torch.tensor([1.0]))[0]
    low = int(float(value_transform(torch.tensor(1.0))) // scale)
    lo_v, hi_v = (float(inverse_value_transform(torch.tensor(b * scale))) for b in (low, low + 1))
    assert_close(one[10 + low + 1], torch.tensor((1.0 - lo_v) / (hi_v - lo_v)), 1e-5)
    top = torch.tensor([0.75 * support.max_scalar])
    mix = 0.5 * (support.scalar_to_target(torch.tensor([0.0])) + support.scalar_to_target(top))
    assert_close(support.probs_to_scalar(mix), top / 2, 1e-4)
    transformed = Support(10, scale=scale)
    mix_t = 0.5 * (transformed.scalar_to_target(torch.tensor([0.0])) + transformed.scalar_to_target(top))
    by_hand = inverse_value_transform(0.5 * value_transform(top))
    assert_close(transformed.probs_to_scalar(mix_t), by_hand, 1e-4)
    assert float(by_hand) < 0.8 * float(top / 2)
    edge = support.scalar_to_target(torch.tensor([1e9, -1e9]))
    assert edge[0, -1] == 1 and edge[1, 0] == 1


@pytest.mark.parametrize("scale", [1.0, 0.2])
def test_hl_gauss_targets_match_the_gaussian_mass_per_bin(scale):
    """Each bin gets the mass of N(h(x) / scale, sigma^2) on its interval (math.erf by hand),
    the tails go to the edge bins, and inside the support the expected scalar is x itself."""
    import math

    support = Support(10, scale=scale, target="hl_gauss", sigma=0.75)
    x = torch.tensor([0.0, 0.7, -3.0, 12.0])
    target = support.scalar_to_target(x)
    assert_close(target.sum(-1), torch.ones(4), 1e-6)
    y = float(value_transform(torch.tensor(0.7))) / scale

    def cdf(v: float) -> float:
        return 0.5 * (1.0 + math.erf((v - y) / (0.75 * math.sqrt(2.0))))

    by_hand = [cdf(i + 0.5) - (cdf(i - 0.5) if i > -10 else 0.0) for i in range(-10, 10)] + [1.0 - cdf(9.5)]
    assert_close(target[1], torch.tensor(by_hand), 1e-5)
    inside = x.abs() < 0.5 * support.max_scalar
    assert_close(support.probs_to_scalar(target)[inside], x[inside], 1e-3)
    assert_close(support.scalar_to_two_hot(x), Support(10, scale=scale).scalar_to_target(x), 0.0)
    with pytest.raises(ValueError, match="target"):
        Support(10, target="gauss")


# ------------------------------------------------------------ world model
def test_left_padding_does_not_change_valid_steps():
    layout = vector_layout()
    model = make_model(layout, window=3)
    b, t, d = 3, 6, 32
    latents = random_latents(b, t, d)
    actions = torch.randint(0, 3, (b, t))
    task_ids = torch.tensor([0, 1, 1])
    pads = [0, 2, 5]
    step_valid = torch.ones(b, t, dtype=torch.bool)
    for row, p in enumerate(pads):
        step_valid[row, :p] = False
    with torch.no_grad():
        padded = model.forward_sequence(latents, actions, task_ids, step_valid)
        for row, p in enumerate(pads):
            alone = model.forward_sequence(latents[row : row + 1, p:], actions[row : row + 1, p:], task_ids[row : row + 1])
            for name in ("value_logits", "policy_logits", "reward_logits", "next_latent"):
                assert_close(getattr(padded, name)[row, p:], getattr(alone, name)[0])
            assert torch.isfinite(padded.value_logits[row]).all()
        # The bootstrap path computes the same values without the other heads.
        values = model.sequence_values(latents, actions, task_ids, step_valid)
        assert_close(values, model.value_support.logits_to_scalar(padded.value_logits))


def test_mixed_layout_builds_and_masks_illegal_actions():
    layout = mixed_layout()
    assert layout.obs_shapes == {"vector": (4,), "image": (7, 10, 10)}
    model = make_model(layout)
    assert set(model.encoders.keys()) == {"vector", "image"}
    assert model.parameter_count() > 0
    n = 4
    img4 = layout.pad_obs(1, np.random.default_rng(0).integers(0, 2, (n, 4, 10, 10)).astype(np.uint8))
    img7 = np.random.default_rng(1).integers(0, 2, (n, 7, 10, 10)).astype(bool)
    vec = np.random.default_rng(2).normal(size=(n, 4)).astype(np.float32)
    z_img4 = model.encode(torch.from_numpy(img4), "image")
    z_img7 = model.encode(torch.from_numpy(img7), "image")
    z_vec = model.encode(torch.from_numpy(vec), "vector")
    for z in (z_img4, z_img7, z_vec):
        assert z.shape == (n, 32)
        assert_close(z.view(n, -1, 8).sum(-1), torch.ones(n, 4), 1e-5)  # SimNorm groups
    # Three rows (one per task), windows of T = n steps.
    latents = torch.stack([z_vec, z_img4, z_img7])
    task_ids = torch.tensor([0, 1, 2])
    actions = torch.zeros(3, n, dtype=torch.long)
    with torch.no_grad():
        out = model.forward_sequence(latents, actions, task_ids)
        root = model.initial_inference(latents, actions[:, :-1], task_ids)
    masks = layout.action_masks
    for row in range(3):
        for logits in (out.policy_logits[row, -1], root.policy_logits[row]):
            legal = torch.from_numpy(masks[row])
            assert (logits[~legal] == ILLEGAL_LOGIT).all()
            assert (logits[legal] > -1e3).all()
    assert root.cache.length == 2 * n - 1
    assert out.value_logits.shape == (3, n, 21) and out.reward_logits.shape == (3, n, 21)
    assert out.next_latent.shape == (3, n, 32) and out.policy_logits.shape == (3, n, 5)


def test_gradients_reach_every_part():
    layout = mixed_layout()
    model = make_model(layout, randomize=False).train()  # zero-initialised heads, as in training
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    vec = torch.from_numpy(rng.normal(size=(2, 3, 4)).astype(np.float32))
    img = torch.from_numpy(rng.integers(0, 2, (2, 3, 7, 10, 10)).astype(np.uint8))
    task_ids = torch.tensor([0, 0, 1, 2])
    actions = torch.from_numpy(rng.integers(0, 3, (4, 3)))

    def loss_fn() -> torch.Tensor:
        z = torch.cat(
            [
                model.encode(vec.reshape(6, 4), "vector").view(2, 3, -1),
                model.encode(img.reshape(6, 7, 10, 10), "image").view(2, 3, -1),
            ]
        )
        out = model.forward_sequence(z, actions, task_ids)
        target = model.support.scalar_to_two_hot(torch.linspace(-3, 3, 12).view(4, 3))
        policy_target = torch.softmax(torch.randn(4, 3, 5), -1)
        loss = -(target * out.value_logits.log_softmax(-1)).sum(-1).mean()
        loss = loss - (target * out.reward_logits.log_softmax(-1)).sum(-1).mean()
        loss = loss - (policy_target * out.policy_logits.log_softmax(-1)).sum(-1).mean()
        return loss + (out.next_latent[:, :-1] - z[:, 1:].detach()).pow(2).sum(-1).mean()

    for _ in range(2):  # after one step the zero-initialised last layers pass gradient back
        opt.zero_grad()
        loss = loss_fn()
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
    for part in ("encoders.vector", "encoders.image", "transformer", "heads", "task_embed", "action_embed"):
        assert any(n.startswith(part) for n, _ in model.named_parameters()), part


# ------------------------------------------------------------- tree cache
# Parents of nodes 1..8 per row (node s+1 is created at simulation s): branching trees
# of depth >= 4, different in each row.
TREE_PARENTS = [
    [0, 1, 2, 3, 1, 5, 0, 4],
    [0, 0, 1, 3, 2, 4, 5, 6],
    [0, 1, 1, 2, 3, 3, 6, 7],
]


@pytest.mark.parametrize("window", [2, 16])
def test_tree_cache_matches_full_sequence(window: int, record_recurrent):
    layout = vector_layout()
    model = make_model(layout, window=window, seed=1)
    b, t, d = 3, 4, 32
    gen = torch.Generator().manual_seed(3)
    latents = SimNorm(8)(torch.randn(b, t, d, generator=gen) * 2)
    actions = torch.randint(0, 3, (b, t - 1), generator=gen)
    task_ids = torch.tensor([0, 1, 1])
    pads = [0, 1, 3]  # row 2 has no context at all (only the root)
    step_valid = torch.ones(b, t, dtype=torch.bool)
    for row, p in enumerate(pads):
        step_valid[row, :p] = False

    captured = record_recurrent(model)
    with torch.no_grad():
        root = model.initial_inference(latents, actions, task_ids, step_valid)
    num_sims = len(TREE_PARENTS[0])
    tree = TreeSearchModel(model, root, task_ids, num_nodes=num_sims + 1)
    rng = np.random.default_rng(5)
    tree_actions = np.zeros((b, num_sims + 1), dtype=np.int64)
    for s in range(num_sims):
        parents = np.array([TREE_PARENTS[row][s] for row in range(b)], dtype=np.int32)
        acts = np.array([rng.integers(0, layout.specs[int(task_ids[row])].num_actions) for row in range(b)], dtype=np.int32)
        tree_actions[:, s + 1] = acts
        reward, value, logits = tree(parents, acts, s + 1)
        assert reward.dtype == np.float32 and value.shape == (b,) and logits.shape == (b, 5)
        assert np.allclose(reward, captured[s].reward.numpy()) and np.allclose(logits, captured[s].policy_logits.numpy())
    assert tree.depth.max() >= 4

    longest = 0
    for row in range(b):
        p = pads[row]
        ctx_latents = latents[row, p:]
        ctx_actions = actions[row, p:]
        steps_ctx = t - p
        with torch.no_grad():
            full_root = model.forward_sequence(
                ctx_latents[None], torch.cat([ctx_actions, torch.zeros(1, dtype=torch.long)])[None], task_ids[row : row + 1]
            )
        assert_close(root.value_logits[row], full_root.value_logits[0, -1])
        assert_close(root.policy_logits[row], full_root.policy_logits[0, -1])
        for node in range(1, num_sims + 1):
            path = []
            cur = node
            while cur != 0:
                path.append(cur)
                cur = int(tree.parent[row, cur])
            path.reverse()
            depth = len(path)
            seq_latents = torch.cat([ctx_latents, tree.latents[row, path]])
            seq_actions = torch.cat(
                [ctx_actions, torch.from_numpy(tree_actions[row, path]), torch.zeros(1, dtype=torch.long)]
            )
            with torch.no_grad():
                full = model.forward_sequence(seq_latents[None], seq_actions[None], task_ids[row : row + 1])
            got = captured[node - 1]
            step = steps_ctx - 1 + depth  # step index of the node's latent
            assert_close(got.reward_logits[row], full.reward_logits[0, step - 1])
            assert_close(got.next_latent[row], full.next_latent[0, step - 1])
            assert_close(got.value_logits[row], full.value_logits[0, step])
            assert_close(got.policy_logits[row], full.policy_logits[0, step])
            longest = max(longest, steps_ctx + depth)
    # Sequences of up to 8 steps: with window=2 the sliding window drops keys, exactly.
    assert longest >= 8 and (window > longest or longest > 2 * window)
