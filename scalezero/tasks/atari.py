"""Atari 2600 games from the Arcade Learning Environment (``ale-py``) under the Atari 100k protocol.

Every choice below is made once here; the rest of the code knows a game only through its
:class:`~scalezero.tasks.base.TaskSpec`.

Protocol
--------
* **Frame skip 4 with max-pooling.** One agent step repeats the chosen action for 4 emulator
  frames; the observation is the pixel-wise maximum of the last two of them (Atari sprites
  flicker between frames). Rewards of the 4 frames are summed. If the game ends inside the
  skip, the step stops there and the observation is the last frame.
* **No-op starts.** Every new game begins with a uniformly drawn number of 1 to 30 single-frame
  NOOPs (drawn from the env's own seeded generator), so episodes start in different states
  although the emulator is deterministic.
* **Sticky actions off** (``repeat_action_probability = 0``), as in the Atari 100k papers.
* **Frames.** Grey (ALE's luminance screen) or RGB, resized from 210x160 to a square 64x64 or
  96x96 with area interpolation (OpenCV), channels first, ``uint8``, ``obs_scale = 255``.
  One frame per observation, no frame stacking: the world model's context
  (``train.context_steps`` past steps at the root of every search, the attention window in the
  model) supplies motion, as in UniZero.
* **Life loss ends a training episode, not an evaluation one.** ``Task.make_env`` builds
  copies whose episode terminates when a life is lost (value targets stop bootstrapping
  there), but whose ``reset()`` then *continues the same game* from the current frame with no
  new no-ops: the game is only restarted once it is really over. Training "episodes" are
  therefore lives, and their returns (``collect/return``) sum to the game's score.
  ``Task.make_eval_env`` builds copies that play full games (the score reported in papers).
* **Episode cap** 108,000 emulator frames = 27,000 agent steps per game (the no-op frames of
  the start are not counted); the step that reaches it is truncated, not terminated.
* **Rewards are not clipped** in the env: the game's score changes are returned as they are.
  Value and reward are categorical over the support of the transformed scalar
  ``h(x) = sign(x)(sqrt(|x|+1) - 1) + 0.001x`` (:mod:`scalezero.model.support`), which
  compresses large rewards so games scoring 1 and 1,000 per event share one head; the Atari
  suites raise ``model.support_size`` to 300 so returns up to about 58,000 stay on the
  support. Unclipped rewards keep the model's values in game units, so the search ranks
  actions by the score itself (clipping makes a 10-point and a 1,000-point event equal).
* **Actions.** The shared action set is ALE's full set of 18 (``num_actions = 18``, action id =
  ALE action id: 0 NOOP, 1 FIRE, 2 UP, ...); each game's spec lists its *minimal* action set as
  ``legal_actions``, so a suite masks the others in the policy and the search. The env
  executes any of the 18 ids (ALE accepts them all in every game); the masks keep the agent
  within the minimal set.

Tasks and frame formats
-----------------------
The 26 games of the Atari 100k benchmark are registered as ``atari-<game>`` (snake_case,
e.g. ``atari-ms_pacman``) with the default format, 64x64 grey. Three more formats are
registered as separate tasks with a suffix: ``atari-<game>-rgb`` (64x64 RGB, UniZero's input),
``atari-<game>-grey96`` and ``atari-<game>-rgb96`` (96x96, MuZero/EfficientZero-sized). Tasks of one
suite must share the frame size (``make_layout`` checks it); grey and RGB games may be mixed
(channels are zero-padded to 3). Any other game ALE ships can be built with
:func:`atari_task` and added with ``scalezero.tasks.register_task``.

Registration needs neither ``ale-py`` nor OpenCV: each game's minimal action set is written in
:data:`ATARI_GAMES` (a test checks it against ALE), and both packages are imported only when
an env is built (``pip install ale-py opencv-python-headless``). The ROMs ship inside the
``ale-py`` wheel; nothing is downloaded at run time.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from scalezero.tasks.base import Task, TaskSpec

NUM_ALE_ACTIONS = 18
"""ALE's full action set; every Atari task's action ids are ALE action ids in ``0..17``."""
FRAME_SKIP = 4
"""Emulator frames per agent step."""
NOOP_MAX = 30
"""New games start with 1 to ``NOOP_MAX`` single-frame NOOPs."""
MAX_EPISODE_FRAMES = 108_000
"""Episode cap in emulator frames (30 minutes of play at 60 Hz)."""
MAX_EPISODE_STEPS = MAX_EPISODE_FRAMES // FRAME_SKIP
"""Episode cap in agent steps: 27,000."""
SCREEN_SHAPE = (210, 160)
"""Height and width of ALE's screen."""


class AtariGame(NamedTuple):
    """One game's reference scores and its minimal action set (ALE action ids)."""

    random: float
    human: float
    minimal_actions: tuple[int, ...]


_ALL = tuple(range(NUM_ALE_ACTIONS))

#: The 26 games of the Atari 100k benchmark (ALE ROM id -> scores, minimal action set).
#: Random and human scores: the reference table of "Dueling Network Architectures for Deep
#: Reinforcement Learning" (Wang et al., 2016), itself from "Human-level control through deep
#: reinforcement learning" (Mnih et al., 2015); the same table normalises the scores of the
#: Atari 100k papers ("Model-Based Reinforcement Learning for Atari", Kaiser et al., 2020, and
#: its successors). Minimal action sets: ``ALEInterface.getMinimalActionSet()`` of ale-py 0.12.
ATARI_GAMES: dict[str, AtariGame] = {
    "alien": AtariGame(227.8, 7127.7, _ALL),
    "amidar": AtariGame(5.8, 1719.5, (0, 1, 2, 3, 4, 5, 10, 11, 12, 13)),
    "assault": AtariGame(222.4, 742.0, (0, 1, 2, 3, 4, 11, 12)),
    "asterix": AtariGame(210.0, 8503.3, (0, 2, 3, 4, 5, 6, 7, 8, 9)),
    "bank_heist": AtariGame(14.2, 753.1, _ALL),
    "battle_zone": AtariGame(2360.0, 37187.5, _ALL),
    "boxing": AtariGame(0.1, 12.1, _ALL),
    "breakout": AtariGame(1.7, 30.5, (0, 1, 3, 4)),
    "chopper_command": AtariGame(811.0, 7387.8, _ALL),
    "crazy_climber": AtariGame(10780.5, 35829.4, (0, 2, 3, 4, 5, 6, 7, 8, 9)),
    "demon_attack": AtariGame(152.1, 1971.0, (0, 1, 3, 4, 11, 12)),
    "freeway": AtariGame(0.0, 29.6, (0, 2, 5)),
    "frostbite": AtariGame(65.2, 4334.7, _ALL),
    "gopher": AtariGame(257.6, 2412.5, (0, 1, 2, 3, 4, 10, 11, 12)),
    "hero": AtariGame(1027.0, 30826.4, _ALL),
    "jamesbond": AtariGame(29.0, 302.8, _ALL),
    "kangaroo": AtariGame(52.0, 3035.0, _ALL),
    "krull": AtariGame(1598.0, 2665.5, _ALL),
    "kung_fu_master": AtariGame(258.5, 22736.3, (0, 2, 3, 4, 5, 8, 9, 11, 12, 13, 14, 15, 16, 17)),
    "ms_pacman": AtariGame(307.3, 6951.6, (0, 2, 3, 4, 5, 6, 7, 8, 9)),
    "pong": AtariGame(-20.7, 14.6, (0, 1, 3, 4, 11, 12)),
    "private_eye": AtariGame(24.9, 69571.3, _ALL),
    "qbert": AtariGame(163.9, 13455.0, (0, 1, 2, 3, 4, 5)),
    "road_runner": AtariGame(11.5, 7845.0, _ALL),
    "seaquest": AtariGame(68.4, 42054.7, _ALL),
    "up_n_down": AtariGame(533.4, 11693.2, (0, 1, 2, 5, 10, 13)),
}

#: Task-name suffix -> (grey, frame size). The empty suffix is the default format.
FRAME_FORMATS: dict[str, tuple[bool, int]] = {
    "": (True, 64),
    "-rgb": (False, 64),
    "-grey96": (True, 96),
    "-rgb96": (False, 96),
}


def _import_ale() -> Any:
    try:
        import ale_py
    except ImportError as exc:
        raise ImportError("Atari tasks need the 'ale-py' package (the ROMs ship in its wheel): pip install ale-py") from exc
    return ale_py


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("Atari tasks resize frames with OpenCV: pip install opencv-python-headless") from exc
    return cv2


class AtariEnv:
    """One Atari game behind the project's env protocol (see the module docstring).

    Args:
        game: ALE ROM id in snake_case (``"pong"``, ``"ms_pacman"``, ...).
        seed: seeds ALE and the no-op draw.
        grey: grey frames ``(1, size, size)``, else RGB ``(3, size, size)``.
        size: side of the square observation (64 or 96 in the registered tasks).
        terminal_on_life_loss: end the episode (``terminated``) at every lost life while the
            game goes on; ``reset()`` then continues the game (training). False: full games
            (evaluation).
        noop_max: a new game starts with 1 to ``noop_max`` NOOP frames (0: none).
        frame_skip: emulator frames per agent step; the observation max-pools the last two.
        max_episode_steps: agent steps after which a game is truncated.

    Attributes:
        noops: NOOP frames played at the start of the current game.
        game_steps: agent steps played in the current game (all lives).
    """

    def __init__(
        self,
        game: str,
        seed: int,
        *,
        grey: bool = True,
        size: int = 64,
        terminal_on_life_loss: bool = False,
        noop_max: int = NOOP_MAX,
        frame_skip: int = FRAME_SKIP,
        max_episode_steps: int = MAX_EPISODE_STEPS,
    ) -> None:
        if frame_skip < 1:
            raise ValueError(f"AtariEnv({game}): frame_skip must be >= 1, got {frame_skip}")
        if noop_max < 0:
            raise ValueError(f"AtariEnv({game}): noop_max must be >= 0, got {noop_max}")
        if size < 8:
            raise ValueError(f"AtariEnv({game}): size must be >= 8 pixels, got {size}")
        if max_episode_steps < 1:
            raise ValueError(f"AtariEnv({game}): max_episode_steps must be >= 1, got {max_episode_steps}")
        ale_py = _import_ale()
        self._cv2 = _import_cv2()
        rom_ids = ale_py.roms.get_all_rom_ids()
        if game not in rom_ids:
            raise ValueError(f"AtariEnv: unknown game {game!r}; ale-py ships: {', '.join(sorted(rom_ids))}")
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self._ale = ale_py.ALEInterface()
        self._ale.setInt("random_seed", int(seed) % (2**31 - 1))
        self._ale.setFloat("repeat_action_probability", 0.0)
        self._ale.setInt("frame_skip", 1)
        self._ale.setInt("max_num_frames_per_episode", 0)  # the cap is ours, in agent steps
        self._ale.loadROM(ale_py.roms.get_rom_path(game))
        self.game = game
        self.grey = bool(grey)
        self.size = int(size)
        self.terminal_on_life_loss = bool(terminal_on_life_loss)
        self.noop_max = int(noop_max)
        self.frame_skip = int(frame_skip)
        self.max_episode_steps = int(max_episode_steps)
        self._rng = np.random.default_rng(seed)
        screen = SCREEN_SHAPE if self.grey else SCREEN_SHAPE + (3,)
        self._frames = np.zeros((2,) + screen, dtype=np.uint8)  # the last two frames of a step
        self._obs: np.ndarray | None = None
        self._lives = 0
        self._continue_game = False  # the last episode ended at a lost life, the game goes on
        self.noops = 0
        self.game_steps = 0

    @property
    def ale(self) -> Any:
        """The underlying ``ale_py.ALEInterface`` (tests, tools)."""
        return self._ale

    def _grab(self, slot: int) -> None:
        if self.grey:
            self._ale.getScreenGrayscale(self._frames[slot])
        else:
            self._ale.getScreenRGB(self._frames[slot])

    def _observe(self) -> np.ndarray:
        frame = np.maximum(self._frames[0], self._frames[1])
        small = self._cv2.resize(frame, (self.size, self.size), interpolation=self._cv2.INTER_AREA)
        obs = small[None] if self.grey else small.transpose(2, 0, 1)
        return np.ascontiguousarray(obs, dtype=np.uint8)

    def reset(self) -> np.ndarray:
        """Start a new game (with no-op starts), or, after a training episode that ended at a
        lost life, continue the running game from its current frame."""
        if self._continue_game and self._obs is not None:
            self._continue_game = False
            return self._obs.copy()
        self._continue_game = False
        self._ale.reset_game()
        self.noops = int(self._rng.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(self.noops):
            self._ale.act(0)
            if self._ale.game_over(with_truncation=False):
                self._ale.reset_game()
        self._grab(0)
        self._frames[1] = self._frames[0]
        self._lives = self._ale.lives()
        self.game_steps = 0
        self._obs = self._observe()
        return self._obs.copy()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        """One agent step: ``action`` (an ALE action id in 0..17) for ``frame_skip`` frames."""
        if self._obs is None:
            raise RuntimeError(f"AtariEnv({self.game}): step() before reset()")
        a = int(action)
        if not 0 <= a < NUM_ALE_ACTIONS:
            raise ValueError(
                f"AtariEnv({self.game}): action must be an ALE action id in 0..{NUM_ALE_ACTIONS - 1}, got {action!r}"
            )
        reward = 0.0
        game_over = False
        for i in range(self.frame_skip):
            reward += self._ale.act(a)
            game_over = self._ale.game_over(with_truncation=False)
            if i == self.frame_skip - 2:
                self._grab(1)
            elif i == self.frame_skip - 1:
                self._grab(0)
            if game_over:
                if i < self.frame_skip - 1:  # ended inside the skip: the last frame only
                    self._grab(0)
                    self._frames[1] = self._frames[0]
                break
        if self.frame_skip == 1:
            self._frames[1] = self._frames[0]
        self.game_steps += 1
        lives = self._ale.lives()
        life_lost = lives < self._lives
        self._lives = lives
        terminated = game_over or (self.terminal_on_life_loss and life_lost)
        capped = self.game_steps >= self.max_episode_steps
        truncated = capped and not terminated
        self._continue_game = terminated and not game_over and not capped
        self._obs = self._observe()
        return self._obs.copy(), float(reward), bool(terminated), bool(truncated)

    def render(self) -> np.ndarray:
        """The current emulator screen, RGB ``uint8 [210, 160, 3]`` (not resized, not pooled)."""
        return self._ale.getScreenRGB()

    def lives(self) -> int:
        """Lives left in the current game (0 for games without lives)."""
        return int(self._ale.lives())

    def close(self) -> None:
        self._ale = None  # ALE frees the emulator with the object


def atari_task(game: str, grey: bool = True, size: int = 64, name: str | None = None) -> Task:
    """A task for one ALE game under this module's protocol.

    ``game`` is an ALE ROM id; the 26 games of :data:`ATARI_GAMES` get their reference scores
    (``target_return`` = the human score) and their minimal action set as ``legal_actions``.
    Other games need ale-py here (their minimal action set is read from the ROM), have no
    reference scores, and get ``target_return`` 0 unless you pass a suite entry's
    ``target_return``. ``name`` defaults to ``atari-<game>`` plus the format's suffix.
    """
    info = ATARI_GAMES.get(game)
    if info is None:
        ale_py = _import_ale()
        if game not in ale_py.roms.get_all_rom_ids():
            raise ValueError(
                f"atari_task: unknown game {game!r}; ale-py ships: {', '.join(sorted(ale_py.roms.get_all_rom_ids()))}"
            )
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        ale = ale_py.ALEInterface()
        ale.loadROM(ale_py.roms.get_rom_path(game))
        info = AtariGame(float("nan"), float("nan"), tuple(int(a.value) for a in ale.getMinimalActionSet()))
    suffix = next(
        (s for s, fmt in FRAME_FORMATS.items() if fmt == (bool(grey), int(size))), f"-{'grey' if grey else 'rgb'}{size}"
    )
    known = not np.isnan(info.human)
    spec = TaskSpec(
        name=name or f"atari-{game}{suffix}",
        obs_kind="image",
        obs_shape=(1 if grey else 3, int(size), int(size)),
        num_actions=NUM_ALE_ACTIONS,
        target_return=info.human if known else 0.0,
        random_return=info.random if known else None,
        human_return=info.human if known else None,
        max_episode_steps=MAX_EPISODE_STEPS,
        legal_actions=info.minimal_actions,
        obs_scale=255.0,
    )

    def make_env(seed: int) -> AtariEnv:
        return AtariEnv(game, seed, grey=grey, size=size, terminal_on_life_loss=True)

    def make_eval_env(seed: int) -> AtariEnv:
        return AtariEnv(game, seed, grey=grey, size=size, terminal_on_life_loss=False)

    return Task(spec=spec, make_env=make_env, make_eval_env=make_eval_env)


def atari_tasks() -> list[Task]:
    """The 26 Atari 100k games in every frame format of :data:`FRAME_FORMATS` (cheap: no ale-py needed)."""
    return [atari_task(game, grey, size) for suffix, (grey, size) in FRAME_FORMATS.items() for game in ATARI_GAMES]


def human_normalised(score: float, game: str) -> float:
    """Human-normalised score of one of :data:`ATARI_GAMES`: ``(score - random) / (human - random)``
    (0 = the random policy, 1 = the human reference)."""
    if game not in ATARI_GAMES:
        raise KeyError(f"human_normalised: no reference scores for {game!r}; known games: {', '.join(ATARI_GAMES)}")
    info = ATARI_GAMES[game]
    return (score - info.random) / (info.human - info.random)
