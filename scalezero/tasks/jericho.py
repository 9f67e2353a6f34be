"""Classic interactive fiction through Jericho (the games of ScaleZero's Jericho benchmark).

Tasks are named ``jericho-<game>`` (:data:`JERICHO_GAMES`). Jericho ships no game files: the
games of its suite are downloaded by users themselves (the Jericho project's repository lists
where: https://github.com/microsoft/jericho, folder of the suite's ``.z5``/``.z8`` files). Point
scalezero at the folder that holds them with a task's ``kwargs: {game_dir: ...}`` in the suite
file, or with ``$SCALEZERO_JERICHO_DIR``; a missing file is named in the error.

* **Legal commands** come from Jericho's own machinery, per state: where spaCy's English
  pipeline ``en_core_web_sm`` is installed, ``FrotzEnv.get_valid_actions()``; otherwise (the
  default: nothing may be downloaded) the same steps with the objects taken from the game's
  object tree only (the objects in the player's room, also when the player is inside
  something in it, and inventory whose names are in
  the game's dictionary and that the game lets you examine), filled into the game's action
  templates (those of Jericho's ``TemplateActionGenerator``: every object in the one-object
  templates; in the two-object ones, such as "put X on Y" or "unlock X with Y", only pairs
  where one of the two is carried or is "all", which cuts the candidates by 18-48% and
  keeps every command of 9:05's walkthrough) and kept where Jericho's world-state filter sees
  the world change, one command per distinct change. Two additions to the candidates: the
  ten compass directions and "yes" / "no" (for games that ask a question); they too must pass
  the filter. Commands are computed once per world state and shared by every copy of the game
  in the process (the filter costs about 0.6 ms per candidate: 0.5-1 s for a new state).
* **Actions** (as in the reference's Jericho setting): slot ``i`` plays the ``i``-th legal
  command of the current state (sorted); a game has :attr:`JerichoGame.action_slots` slots
  and states with more legal commands keep the first ones. Slots past the list are illegal.
  Where no command passes the filter (a question the game asks: the filter sees no world
  change in an answer), "no", "wait" and "yes" are offered.
* **Observations**: the game's answer to the last command, then its room description
  ("look") and inventory, taken from saved states so they cost the game nothing; as hashed
  word ids (:mod:`scalezero.tasks.words`), ``OBS_LEN`` long.
* **Reward**: the change of the game's score. Episodes end ``terminated`` when the game is won
  or over, ``truncated`` at the game's step cap.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scalezero.tasks import words
from scalezero.tasks.base import Task, TaskSpec

JERICHO_PIP = 'pip install "textworld==1.7.0"  (it brings jericho 3.3.1)'
OBS_LEN = 256
"""Tokens per observation."""
EXTRA_CANDIDATES = ("north", "south", "east", "west", "northeast", "northwest", "southeast", "southwest", "up", "down", "yes", "no")
"""Commands tried in every state besides the template-generated ones."""
FALLBACK = ("no", "wait", "yes")
"""Offered where no command passes the filter: a question the game asks (the filter sees no
world change in an answer) or a state with nothing to do."""


CACHE_STATES = 200_000
"""World states whose legal commands are kept per game (then the cache starts again)."""
_COMMANDS: dict[tuple, dict[str, list[str]]] = {}
"""(game file, slots, spaCy or not) -> world-state hash -> legal commands, shared by every
copy of a game in the process: the commands depend on the world state alone, and copies of
one game (collection envs, evaluation) meet the same states, the first one at every reset."""


@dataclass(frozen=True)
class JerichoGame:
    """One game of the Jericho suite: its file, action slots and step cap."""

    file: str
    action_slots: int
    max_steps: int
    max_score: int
    random_return: float | None = None


#: game -> file, action slots and step cap. The four of ScaleZero's Jericho benchmark take the
#: reference's action-space sizes and step limits (GPU-sized); 9:05 is the CPU game.
JERICHO_GAMES: dict[str, JerichoGame] = {
    "detective": JerichoGame("detective.z5", action_slots=12, max_steps=100, max_score=360),
    "omniquest": JerichoGame("omniquest.z5", action_slots=25, max_steps=100, max_score=50),
    "acorncourt": JerichoGame("acorncourt.z5", action_slots=45, max_steps=50, max_score=30),
    "zork1": JerichoGame("zork1.z5", action_slots=55, max_steps=500, max_score=350),
    "905": JerichoGame("905.z5", action_slots=32, max_steps=50, max_score=1),
}


def _import_jericho():
    try:
        import jericho
    except ImportError as e:
        raise ImportError(f"Jericho games need the jericho package: {JERICHO_PIP} (or `make install`)") from e
    return jericho


def _jericho_util():
    """``jericho.util`` (looked up as a module: the package's ``util`` attribute can be
    ``ctypes.util``, depending on import order)."""
    import importlib

    return importlib.import_module("jericho.util")


def game_path(game: str, game_dir: str | os.PathLike | None = None) -> Path:
    """The file of ``game`` in ``game_dir`` (default ``$SCALEZERO_JERICHO_DIR``); a clear error
    naming the file, the folder and where the games come from when it is not there."""
    spec = JERICHO_GAMES[game]
    folder = game_dir or os.environ.get("SCALEZERO_JERICHO_DIR")
    if not folder:
        raise FileNotFoundError(
            f"jericho-{game} needs the game file {spec.file}: set $SCALEZERO_JERICHO_DIR or the task's kwargs "
            "{game_dir: ...} to the folder of the Jericho suite's games (users download them themselves; "
            "see https://github.com/microsoft/jericho)"
        )
    path = Path(folder).expanduser() / spec.file
    if not path.is_file():
        raise FileNotFoundError(
            f"jericho-{game}: no game file {path} (the folder must hold the Jericho suite's {spec.file}; "
            "users download the suite themselves, see https://github.com/microsoft/jericho)"
        )
    return path


def _spacy_pipeline_installed() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("en_core_web_sm") is not None
    except (ImportError, ValueError):
        return False


class JerichoEnv:
    """One Jericho game behind the project's env protocol (see the module docstring)."""

    def __init__(self, path: Path | str, action_slots: int, max_steps: int, name: str = "jericho", seed: int = 0, obs_len: int = OBS_LEN) -> None:
        jericho = _import_jericho()
        self.name = name
        self.num_actions = int(action_slots)
        self.max_steps = int(max_steps)
        self.obs_len = int(obs_len)
        self.seed = int(seed)
        self._env = jericho.FrotzEnv(str(path), seed=self.seed)
        self.max_score = int(self._env.get_max_score())
        self.use_spacy = _spacy_pipeline_installed()
        self._cache = _COMMANDS.setdefault((str(Path(path).resolve()), self.num_actions, self.use_spacy), {})
        self._commands: list[str] = []
        self._score = 0
        self._steps = 0
        self._done = True
        self._lines: list[str] = []
        self.text = ""
        """The current observation as text."""

    # -- legal commands -------------------------------------------------------------------
    def _tree_objects(self) -> dict[str, list[tuple]]:
        """Jericho's interactive objects, from the object tree alone (no spaCy)."""
        util = _jericho_util()

        env = self._env
        state = env.get_state()
        found: set[tuple] = set()
        location = env.get_player_location()
        while location is not None and location.parent:  # in a bed or a car: the room around it
            location = env.get_object(location.parent)
        if location is not None:
            nearby = util.get_subtree(location.child, env.get_world_objects())
            me = env.get_player_object()
            for obj in nearby:
                if obj == me:
                    continue
                parts = obj.name.split()
                found.add((obj.name, "PROPN", "OBJTREE"))
                if len(parts) > 1:
                    found.update((w, "ADJ", "OBJTREE") for w in parts[:-1])
                    found.add((parts[-1], "NOUN", "OBJTREE"))
        dictionary = {w.word for w in env.get_dictionary()}
        width = max(len(w) for w in dictionary)
        found = {o for o in found if len(o[0].split()) > 1 or o[0][:width] in dictionary}
        by_description: dict[str, list[tuple]] = {}
        for obj in sorted(found):
            env.set_state(state)
            answer = util.clean(env.step("examine " + obj[0])[0])
            if util.recognized(answer):
                by_description.setdefault(answer, []).append(obj)
        by_description["all"] = [("all", "NOUN", "LOC")]
        env.set_state(state)
        return by_description

    def _held_words(self) -> set[str]:
        """The words of the names of what the player carries (and "all")."""
        held = {"all"}
        for obj in self._env.get_inventory():
            held.add(obj.name)
            held.update(obj.name.split())
        return held

    def _fill_templates(self, names: list[str], held: set[str]) -> list[str]:
        """The game's templates filled with ``names``: every name in every one-object template,
        and in two-object templates only the pairs where one of the two is carried (or "all")."""
        out: list[str] = []
        for template in self._env.act_gen.templates:
            holes = template.count("OBJ")
            if holes == 0:
                out.append(template)
            elif holes == 1:
                out += [template.replace("OBJ", n) for n in names]
            else:
                for a in names:
                    out += [template.replace("OBJ", a, 1).replace("OBJ", b, 1) for b in names if b != a and (a in held or b in held)]
        return out

    def _legal_commands(self) -> list[str]:
        env = self._env
        key = env.get_world_state_hash()
        if key in self._cache:
            return self._cache[key]
        if len(self._cache) >= CACHE_STATES:
            self._cache.clear()
        util = _jericho_util()

        state = env.get_state()
        if self.use_spacy:
            objects = env._identify_interactive_objects(use_object_tree=True)
            candidates = [getattr(a, "action", a) for a in env.act_gen.generate_actions(env._score_object_names(objects))]
        else:
            candidates = self._fill_templates(env._score_object_names(self._tree_objects()), self._held_words())
        candidates += [c for c in EXTRA_CANDIDATES if c not in candidates]
        groups = env._filter_candidate_actions(candidates, use_ctypes=True, use_parallel=False)
        env.set_state(state)
        commands = sorted(max(group, key=util.verb_usage_count) for group in groups.values())[: self.num_actions]
        self._cache[key] = commands or list(FALLBACK)
        return self._cache[key]

    def legal_commands(self) -> list[str]:
        """The legal commands of the current state; slot ``i`` plays the ``i``-th."""
        return list(self._commands)

    def legal_actions(self) -> np.ndarray:
        """``bool [action_slots]``: the slots that hold a legal command now."""
        mask = np.zeros(self.num_actions, dtype=bool)
        mask[: len(self._commands)] = True
        return mask

    def same_effect(self, command: str) -> int | None:
        """The slot of a legal command with the same effect as ``command`` (e.g. "s" and "south":
        the same world state, world change as Jericho's filter sees it, score and end), or None;
        the game's state is left as it was."""
        env = self._env
        state = env.get_state()
        outcomes = []
        for c in [command, *self._commands]:
            env.set_state(state)
            _, _, done, info = env.step(c)
            outcomes.append((env.get_world_state_hash(), env._get_world_diff(), info["score"], done))
        env.set_state(state)
        return next((i for i, h in enumerate(outcomes[1:]) if h == outcomes[0]), None)

    # -- env protocol ---------------------------------------------------------------------
    def _observe(self, answer: str) -> np.ndarray:
        env = self._env
        state = env.get_state()
        look = env.step("look")[0]
        env.set_state(state)
        inventory = env.step("inventory")[0]
        env.set_state(state)
        self.text = " ".join(" ".join(part.split()) for part in (answer, look, inventory) if part.strip())
        self._commands = [] if self._done else self._legal_commands()
        return words.encode(self.text, self.obs_len)

    def reset(self) -> np.ndarray:
        """Start the game again; returns the first observation."""
        answer, info = self._env.reset()
        self._score = int(info["score"])
        self._steps = 0
        self._done = False
        obs = self._observe(answer)
        self._lines = [f"{self.name}: max score {self.max_score}, at most {self.max_steps} steps", "", self.text]
        return obs

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        """Play the command in slot ``action``; returns ``(obs, reward, terminated, truncated)``.
        A slot past the legal list plays "look" (no reward, a step spent)."""
        if self._done:
            raise RuntimeError(f"{self.name}: the episode is over (or was never started); call reset() first")
        a = int(action)
        if not 0 <= a < self.num_actions:
            raise ValueError(f"{self.name}: action {a} is not a slot (0..{self.num_actions - 1})")
        command = self._commands[a] if a < len(self._commands) else "look"
        answer, _, done, info = self._env.step(command)
        reward = float(int(info["score"]) - self._score)
        self._score = int(info["score"])
        self._steps += 1
        terminated = bool(done)
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        obs = self._observe(answer)
        self._lines += ["", f"> {command}" + (f"    [reward {reward:+g}]" if reward else ""), self.text]
        if self._done:
            end = "won" if self._env.victory() else "game over" if self._env.game_over() else f"stopped at the {self.max_steps}-step limit"
            self._lines += ["", f"[{end}: score {self._score} of {self.max_score} in {self._steps} steps]"]
        return obs, reward, terminated, truncated

    def walkthrough(self) -> list[str]:
        """Jericho's walkthrough of the game (its own command sequence to the max score)."""
        return list(self._env.get_walkthrough())

    def transcript(self) -> str:
        """The current (or last) episode: every observation and the command that led to it."""
        return "\n".join(self._lines)

    def close(self) -> None:
        self._env.close()


def make_jericho_env(game: str, seed: int = 0, game_dir: str | None = None) -> JerichoEnv:
    """A fresh copy of ``jericho-<game>``, its file taken from ``game_dir`` or
    ``$SCALEZERO_JERICHO_DIR``."""
    spec = JERICHO_GAMES[game]
    path = game_path(game, game_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Jericho's notes on games it only partly supports
        env = JerichoEnv(path, spec.action_slots, spec.max_steps, name=f"jericho-{game}", seed=seed)
    if env.max_score != spec.max_score:
        warnings.warn(f"jericho-{game}: {path} has max score {env.max_score}, not the suite's {spec.max_score} "
                      f"(another release of the game?); the task's target return stays {spec.max_score}", RuntimeWarning, stacklevel=2)  # fmt: skip
    return env


def jericho_tasks() -> list[Task]:
    """The games of :data:`JERICHO_GAMES` as tasks (``jericho-<game>``); target = max score."""
    tasks = []
    for game, s in JERICHO_GAMES.items():
        spec = TaskSpec(
            name=f"jericho-{game}", obs_kind="text", obs_shape=(OBS_LEN,), num_actions=s.action_slots,
            target_return=float(s.max_score), random_return=s.random_return, max_episode_steps=s.max_steps,
        )  # fmt: skip
        tasks.append(Task(spec=spec, make_env=lambda seed, g=game, **kw: make_jericho_env(g, seed, **kw), options=("game_dir",)))
    return tasks
