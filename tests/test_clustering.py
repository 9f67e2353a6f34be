"""MoW task clustering: tasks with identical gradients share a cluster, opposed ones never do;
clusters restrict MoE routing, search stays exact, and the learner logs and keeps the result."""

import numpy as np
import torch

from scalezero.config import config_from_dict
from scalezero.model.moe import MoE
from scalezero.training.clustering import cluster_tasks, experts_per_cluster
from scalezero.training.collector import Collector
from scalezero.training.learner import Learner
from scalezero.training.loop import build_model, resolve_tasks


def test_identical_gradients_form_one_cluster():
    g = np.random.default_rng(0).normal(size=50)
    assert cluster_tasks(np.stack([g, g, 2 * g]), num_clusters=3).tolist() == [0, 0, 0]


def test_opposed_gradients_are_never_merged():
    g = np.random.default_rng(1).normal(size=50)
    assert cluster_tasks(np.stack([g, -g]), num_clusters=1).tolist() == [0, 1]


def test_two_groups_are_found():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=200), rng.normal(size=200)
    b -= a * (a @ b) / (a @ a)  # orthogonal directions
    grads = np.stack([a, b, a + 0.1 * rng.normal(size=200), b + 0.1 * rng.normal(size=200)])
    assert cluster_tasks(grads, num_clusters=2).tolist() == [0, 1, 0, 1]


def test_experts_are_dealt_to_clusters():
    allowed = experts_per_cluster(np.array([0, 0, 1]), num_experts=4)
    assert allowed.tolist() == [[True, False, True, False], [True, False, True, False], [False, True, False, True]]


def test_moe_routes_only_to_allowed_experts():
    torch.manual_seed(0)
    moe = MoE(16, num_experts=4, top_k=2)
    x = torch.randn(6, 16)
    allowed = torch.tensor([[True, False, True, False]] * 3 + [[False, True, False, True]] * 3)
    _, info = moe(x, allowed)
    for row, experts in zip(info.expert_index.tolist(), allowed.tolist()):
        assert all(experts[e] for e in row)


def test_learner_clusters_tasks_and_search_stays_exact():
    config = config_from_dict({
        "tasks": ["cartpole", "minatar-breakout", "minatar-asterix"],
        "model": {"embed_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_hidden": 32, "conv_channels": 8, "moe_num_experts": 4},
        "search": {"num_simulations": 4},
        "replay": {"unroll_steps": 2, "td_steps": 2},
        "train": {"num_envs": 4, "batch_size": 4, "context_steps": 2, "cluster_every": 1, "num_clusters": 2},
    })  # fmt: skip
    tasks, layout = resolve_tasks(config)
    torch.manual_seed(0)
    model = build_model(config, layout, torch.device("cpu"))
    collector = Collector(tasks, layout, config, torch.device("cpu"))
    for _ in range(6):
        collector.step(model, [0, 1, 2])
    learner = Learner(model, layout, config, torch.device("cpu"))
    metrics = learner.update(learner.sample(collector.replays, [0, 1, 2]))
    labels = [int(metrics[f"task{t}/cluster"]) for t in range(3)]
    assert labels[0] == 0 and learner.cluster_labels == dict(enumerate(labels))
    assert torch.equal(learner.target.expert_allowed, model.expert_allowed)
    expected = experts_per_cluster(np.array(labels), 4)
    assert np.array_equal(model.expert_allowed.numpy(), expected)  # 3 tasks, at most 3 clusters, 4 experts
    # With restricted routing, the cached search step still equals the full-sequence forward.
    model.eval()
    latents = torch.randn(3, 3, 32).softmax(-1)
    actions = torch.tensor([[0, 1, 1], [1, 0, 2], [0, 0, 1]])
    task_ids = torch.tensor([0, 1, 2])
    with torch.no_grad():
        root = model.initial_inference(latents, actions[:, :2], task_ids)
        step = model.recurrent_inference(root.cache, actions[:, 2], task_ids)
        seq = torch.cat([latents, step.next_latent.unsqueeze(1)], dim=1)
        full = model.forward_sequence(seq, torch.cat([actions, actions[:, :1]], dim=1), task_ids)
    torch.testing.assert_close(step.value_logits, full.value_logits[:, 3], rtol=1e-5, atol=1e-5)
