"""One text game behind the project's environment protocol.

* ``reset() -> obs``; ``step(action) -> (obs, reward, terminated, truncated)``; ``close()``.
* Actions index the game's fixed command list (:attr:`TextGameEnv.commands`); an id outside
  it is an error. A command that is not legal now is played anyway: the state does not
  change, the feedback says why ("The pine door is locked."), the reward is 0 and it counts
  as a step.
* ``legal_actions()``: ``bool [num_commands]``, the commands that are legal now.
* Observations: ``int64 [OBS_LEN]`` token ids of the feedback, room description, inventory
  and score (see :mod:`scalezero.tasks.text.narration`), 0-padded.
* Rewards: see :mod:`scalezero.tasks.text.world` (+1 per milestone, +1 for the win, which
  terminates the episode); after ``game.max_steps`` steps the episode is truncated.
* ``transcript()``: the episode so far (or the last one, once it ended) as readable text.

The game is fixed: every episode starts from the same state and plays out the same way for
the same commands. The ``seed`` is accepted for the protocol and changes nothing.
"""

from __future__ import annotations

import numpy as np

from scalezero.tasks.text import narration, tokenizer
from scalezero.tasks.text.world import Game, World


class TextGameEnv:
    """An interactive-fiction game: text observations, a fixed command list, legal masks."""

    def __init__(self, game: Game, seed: int = 0, obs_len: int = tokenizer.OBS_LEN) -> None:
        self.game = game
        self.seed = int(seed)
        self.obs_len = int(obs_len)
        self.world = World(game)
        self._steps = 0
        self._done = True
        self._lines: list[str] = []
        self._legal: np.ndarray | None = None
        self._text = ""

    @property
    def commands(self) -> tuple[str, ...]:
        """The command list: action ``i`` plays ``commands[i]``."""
        return self.game.command_texts

    @property
    def num_actions(self) -> int:
        return len(self.game.commands)

    @property
    def text(self) -> str:
        """The current observation as text."""
        return self._text

    def _observe(self, feedback: list[str]) -> np.ndarray:
        sentences = narration.observation_sentences(self.world, feedback)
        self._text = " ".join(sentences)
        self._legal = None
        return tokenizer.encode(sentences, self.obs_len)

    def reset(self) -> np.ndarray:
        """Start the game again from its first state; returns the first observation."""
        self.world.reset()
        self._steps = 0
        self._done = False
        obs = self._observe(narration.intro_sentences(self.game))
        self._lines = [
            f"{self.game.name} ({self.game.level}): {len(self.game.commands)} commands, at most {self.game.max_steps} steps",
            "",
            self._text,
        ]
        return obs

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        """Play command ``action``; returns ``(obs, reward, terminated, truncated)``."""
        if self._done:
            raise RuntimeError(f"{self.game.name}: the episode is over (or was never started); call reset() first")
        a = int(action)
        if not 0 <= a < len(self.game.commands):
            raise ValueError(f"{self.game.name}: action {a} is not a command id (0..{len(self.game.commands) - 1})")
        cmd = self.game.commands[a]
        events, reward = self.world.execute(cmd)
        self._steps += 1
        terminated = self.world.won
        truncated = not terminated and self._steps >= self.game.max_steps
        self._done = terminated or truncated
        obs = self._observe(narration.event_sentences(events))
        self._lines += ["", f"> {cmd.text}" + (f"    [reward {reward:+g}]" if reward else ""), self._text]
        if self._done:
            end = "won" if terminated else f"stopped at the {self.game.max_steps}-step limit"
            self._lines += ["", f"[{end}: return {self.world.score} of {int(self.game.max_return)} in {self._steps} steps]"]
        return obs, reward, terminated, truncated

    def legal_actions(self) -> np.ndarray:
        """``bool [num_commands]``: the commands legal in the current state."""
        if self._legal is None:
            self._legal = self.world.legal_mask()
        return self._legal.copy()

    def transcript(self) -> str:
        """The current (or last) episode: every observation and the command that led to it."""
        return "\n".join(self._lines)

    def close(self) -> None:
        pass
