"""Watch a trained agent: play one episode of a task and keep what can be looked at.

``scalezero play --run DIR --task NAME`` loads the run's latest checkpoint, plays one greedy
episode (the evaluation version of the env, searching every action as in evaluation) and
writes, under ``DIR/play/``:

* ``<task>-seed<S>.gif`` for tasks that can be drawn: the env's own ``render()`` frames
  (Atari, DeepMind Control) or, for image observations without a renderer (MinAtar), the
  observation itself with one colour per channel, enlarged;
* ``<task>-seed<S>.txt``, always: a transcript of the episode (the env's own ``transcript()``
  for text games; otherwise every step's action and reward).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Channel colours for observations drawn without a renderer (MinAtar-style 0/1 planes).
PALETTE = np.array(
    [
        [230, 80, 60], [60, 160, 230], [240, 200, 50], [90, 200, 110], [200, 100, 220],
        [250, 140, 40], [120, 220, 220], [230, 230, 230], [160, 110, 70], [140, 140, 255],
    ],
    dtype=np.uint8,
)  # fmt: skip


@dataclass
class Episode:
    """One played episode: its frames (may be empty), transcript lines, return and length."""

    frames: list[np.ndarray] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    episode_return: float = 0.0
    length: int = 0
    success: bool | None = None


def observation_frame(obs: np.ndarray, scale: int = 20) -> np.ndarray | None:
    """An RGB picture ``[H*scale, W*scale, 3]`` of a channels-first image observation (the
    last active channel's colour per cell, black where none is); None for other observations."""
    obs = np.asarray(obs)
    if obs.ndim != 3:
        return None
    if obs.shape[0] in (1, 3) and obs.max() > 1:  # already grey or RGB pixels
        rgb = np.repeat(obs, 3, axis=0) if obs.shape[0] == 1 else obs
        img = rgb.transpose(1, 2, 0).astype(np.uint8)
    else:
        img = np.zeros(obs.shape[1:] + (3,), dtype=np.uint8)
        for c in range(obs.shape[0]):
            img[obs[c] > 0] = PALETTE[c % len(PALETTE)]
    return np.kron(img, np.ones((scale, scale, 1), dtype=np.uint8)) if scale > 1 else img


def _frame(env: Any, obs: np.ndarray) -> np.ndarray | None:
    render = getattr(env, "render", None)
    if callable(render):
        try:
            frame = render()
        except Exception:  # noqa: BLE001 -- no display/OpenGL for this env here: fall back to the observation
            frame = None
        if frame is not None and np.asarray(frame).ndim == 3:
            return np.asarray(frame, dtype=np.uint8)
    return observation_frame(obs)


def play_episode(agent: Any, task: str, seed: int = 0, max_steps: int = 2_000, draw: bool = True) -> Episode:
    """Play one greedy episode of ``task`` with ``agent`` (a :class:`scalezero.api.Agent`)."""
    env = agent.make_env(task, seed=seed, evaluation=True)
    episode = Episode()
    obs = env.reset()
    legal_fn = getattr(env, "legal_actions", None)
    success_fn = getattr(env, "is_success", None)
    if draw and (frame := _frame(env, obs)) is not None:
        episode.frames.append(frame)
    done = False
    while not done and episode.length < max_steps:
        legal = legal_fn() if callable(legal_fn) else None
        action = agent.act(obs, task=task, new_episode=episode.length == 0, legal=legal)
        obs, reward, terminated, truncated = env.step(action)
        episode.length += 1
        episode.episode_return += float(reward)
        if callable(success_fn):
            episode.success = bool(episode.success) or bool(success_fn())
        shown = np.array2string(np.asarray(action), precision=3) if np.ndim(action) else str(int(action))
        episode.lines.append(f"step {episode.length:5d}  action {shown}  reward {float(reward):+.3f}  return {episode.episode_return:+.3f}")
        if draw and (frame := _frame(env, obs)) is not None:
            episode.frames.append(frame)
        done = bool(terminated or truncated)
    transcript = getattr(env, "transcript", None)
    if callable(transcript):
        episode.lines = [transcript()]
    env.close()
    return episode


def write_gif(frames: list[np.ndarray], path: Path, fps: int = 15) -> Path:
    """Write RGB frames as an animated GIF (Pillow, which matplotlib already brings)."""
    from PIL import Image

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, int(1000 / fps)), loop=0)
    return path


def play(
    run: str | Path, task: str, seed: int = 0, max_steps: int = 2_000, fps: int = 15, device: str = "cpu", threads: int | None = None
) -> dict[str, Any]:
    """Play and write one episode of ``task`` from run directory ``run``; returns what was
    written (``gif``, ``transcript``) and the episode's ``return`` and ``length``. ``threads``:
    see :func:`scalezero.api.load_agent`."""
    from scalezero.api import load_agent

    agent = load_agent(run, device=device, threads=threads)
    episode = play_episode(agent, task, seed=seed, max_steps=max_steps)
    out_dir = Path(run) / "play"
    out_dir.mkdir(exist_ok=True)
    stem = f"{task}-seed{seed}"
    header = f"{task}, seed {seed}: return {episode.episode_return:.3f} in {episode.length} steps"
    if episode.success is not None:
        header += f", success {episode.success}"
    text = out_dir / f"{stem}.txt"
    text.write_text(header + "\n\n" + "\n".join(episode.lines) + "\n")
    result: dict[str, Any] = {"transcript": text, "return": episode.episode_return, "length": episode.length}
    if episode.frames:
        result["gif"] = write_gif(episode.frames, out_dir / f"{stem}.gif", fps)
    return result
