import os
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minatar import Environment

from sb3_dreamer.common.palette import PALETTE
from sb3_dreamer.envs import MINATAR_GAMES, POMDP_CHANNELS, MinAtarEnv, MinAtarPOMDP, register_minatar_envs
from sb3_dreamer.envs.minatar import RENDER_SCALE

register_minatar_envs()

GAMES = {  # id prefix: (MinAtar game, channels, POMDP channels)
    "Asterix": ("asterix", 4, 3),
    "Breakout": ("breakout", 4, 3),
    "Freeway": ("freeway", 7, 2),
    "Seaquest": ("seaquest", 10, 9),
    "SpaceInvaders": ("space_invaders", 6, 4),
}
IDS = [f"{name}{suffix}-MinAtar" for name in GAMES for suffix in ("", "POMDP")]


def _game(env_id: str) -> tuple[str, int]:
    """MinAtar game name and expected channel count of an id."""
    name, _, _ = env_id.partition("-")
    pomdp = name.endswith("POMDP")
    game, channels, pomdp_channels = GAMES[name.removesuffix("POMDP")]
    return game, pomdp_channels if pomdp else channels


def _rollout(env: gym.Env, seed: int, actions: np.ndarray) -> tuple[list[np.ndarray], list[float], list[bool]]:
    """Observations, rewards and terminations of a seeded episode, resetting when it ends."""
    observations, rewards, terminations = [env.reset(seed=seed)[0]], [], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        terminations.append(terminated)
        if terminated or truncated:
            observations.append(env.reset()[0])
    return observations, rewards, terminations


@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # The made env is wrapped (TimeLimit, and MinAtarPOMDP for the POMDP ids) on purpose.
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
        check_env(env)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_and_observations(env_id: str) -> None:
    game, channels = _game(env_id)
    env = gym.make(env_id)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box)
    assert space.shape == (channels, 10, 10)
    assert space.dtype == np.uint8
    assert np.all(space.low == 0) and np.all(space.high == 1)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    assert env.action_space.n == len(Environment(game).minimal_action_set())
    assert env.unwrapped.game == game

    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    for _ in range(200):
        assert obs in space
        assert obs.flags.c_contiguous and set(np.unique(obs)) <= {0, 1}
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert isinstance(reward, float) and not truncated
        if terminated:
            obs, _ = env.reset()
    env.close()


@pytest.mark.parametrize("name", list(GAMES))
def test_pomdp_keeps_channels_of_full_observation(name: str) -> None:
    game = GAMES[name][0]
    full, pomdp = gym.make(f"{name}-MinAtar"), gym.make(f"{name}POMDP-MinAtar")
    actions = np.random.default_rng(0).integers(full.action_space.n, size=300)
    full_obs, full_rewards, full_terms = _rollout(full, 3, actions)
    pomdp_obs, pomdp_rewards, pomdp_terms = _rollout(pomdp, 3, actions)
    kept = list(POMDP_CHANNELS[game])
    assert len(full_obs) == len(pomdp_obs)
    for obs, partial in zip(full_obs, pomdp_obs, strict=True):
        np.testing.assert_array_equal(partial, obs[kept])
    assert full_rewards == pomdp_rewards and full_terms == pomdp_terms


def test_pomdp_wraps_env_directly() -> None:
    env = MinAtarPOMDP(MinAtarEnv("space_invaders"))
    obs, _ = env.reset(seed=1)
    assert obs.shape == (4, 10, 10) and obs in env.observation_space


def test_pomdp_as_env_wrapper_of_made_env() -> None:
    env = MinAtarPOMDP(gym.make("Freeway-MinAtar", render_mode="rgb_array"))  # as RL Zoo's env_wrapper does
    assert env.reset(seed=0)[0].shape == (2, 10, 10)
    assert env.render().shape == (10 * RENDER_SCALE, 10 * RENDER_SCALE, 3)
    remade = gym.make(env.spec)  # the spec records the wrapper
    assert remade.reset(seed=0)[0].shape == (2, 10, 10) and remade.unwrapped.render_mode == "rgb_array"


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_seeding_is_reproducible_with_sticky_actions(game: str) -> None:
    actions = np.random.default_rng(1).integers(MinAtarEnv(game).action_space.n, size=300)
    runs = [_rollout(MinAtarEnv(game, sticky_action_prob=0.5), 7, actions) for _ in range(2)]
    for first, second in zip(runs[0][0], runs[1][0], strict=True):
        np.testing.assert_array_equal(first, second)
    assert runs[0][1:] == runs[1][1:]


def test_reseeding_same_env_replays_trajectory() -> None:
    env = gym.make("Breakout-MinAtar", sticky_action_prob=0.5)
    actions = np.random.default_rng(2).integers(env.action_space.n, size=300)
    for seed in range(8):
        first = _rollout(env, seed, actions)
        env.unwrapped.minatar.last_action = 3  # as if the last episode ended moving right: this must not stick
        second = _rollout(env, seed, actions)
        assert all(np.array_equal(a, b) for a, b in zip(first[0], second[0], strict=True))
        assert first[1:] == second[1:]


@pytest.mark.parametrize("env_id", ["Asterix-MinAtar", "SpaceInvaders-MinAtar"])
def test_different_seeds_differ(env_id: str) -> None:
    env = gym.make(env_id)
    actions = np.random.default_rng(3).integers(env.action_space.n, size=300)
    first, second = _rollout(env, 0, actions)[0], _rollout(env, 1, actions)[0]
    assert len(first) != len(second) or any(not np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("env_id", IDS)
def test_time_limit(env_id: str) -> None:
    assert gym.make(env_id).spec.max_episode_steps == 10_000
    env = gym.make(env_id, max_episode_steps=5)
    env.reset(seed=0)
    for step in range(1, 6):
        _, _, terminated, truncated, _ = env.step(0)
        if terminated:
            assert not truncated
            break
        assert truncated == (step == 5)


def test_kwargs_reach_minatar() -> None:
    for env_id in ("Asterix-MinAtar", "AsterixPOMDP-MinAtar"):
        minatar = gym.make(env_id, sticky_action_prob=0.25, difficulty_ramping=False).unwrapped.minatar
        assert minatar.sticky_action_prob == 0.25
        assert minatar.env.ramping is False
        default = gym.make(env_id).unwrapped.minatar
        assert default.sticky_action_prob == 0.1 and default.env.ramping is True


def test_action_meanings_name_the_minimal_action_sets() -> None:
    meanings = {game: MinAtarEnv(game).get_action_meanings() for game in MINATAR_GAMES}
    assert meanings == {
        "asterix": ["NOOP", "LEFT", "UP", "RIGHT", "DOWN"],
        "breakout": ["NOOP", "LEFT", "RIGHT"],
        "freeway": ["NOOP", "UP", "DOWN"],
        "seaquest": ["NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE"],
        "space_invaders": ["NOOP", "LEFT", "RIGHT", "FIRE"],
    }
    # The names are what the actions do: Breakout's paddle moves by one column each way
    env = gym.make("Breakout-MinAtar", sticky_action_prob=0.0).unwrapped
    env.reset(seed=0)
    start = env.minatar.env.pos
    env.step(meanings["breakout"].index("LEFT"))
    assert env.minatar.env.pos == start - 1
    env.step(meanings["breakout"].index("RIGHT"))
    assert env.minatar.env.pos == start


@pytest.mark.parametrize("env_id", ["Breakout-MinAtar", "SeaquestPOMDP-MinAtar"])
def test_render(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (10 * RENDER_SCALE, 10 * RENDER_SCALE, 3)
    assert frame.dtype == np.uint8
    assert frame.any()
    # Each pixel block has the colour of its (last) set channel, or black.
    state = env.unwrapped.minatar.state()
    for y, x in [(y, x) for y in range(10) for x in range(10)]:
        channels = np.flatnonzero(state[y, x])
        expected = PALETTE[channels[-1] + 1] if len(channels) else PALETTE[0]
        np.testing.assert_array_equal(frame[y * RENDER_SCALE, x * RENDER_SCALE], expected)


def test_palette_colours_distinct() -> None:
    assert len(PALETTE) > max(GAMES[name][1] for name in GAMES)
    assert len(np.unique(PALETTE, axis=0)) == len(PALETTE)
    assert PALETTE[1:].any(axis=1).all()  # no channel is drawn black


def test_unknown_game() -> None:
    with pytest.raises(ValueError, match=r"Unknown MinAtar game 'pong'.*breakout.*space_invaders"):
        MinAtarEnv("pong")


def test_pomdp_needs_minatar_env() -> None:
    with pytest.raises(ValueError, match=r"needs a MinAtar env.*CartPole-v1"):
        MinAtarPOMDP(gym.make("CartPole-v1"))


def test_pomdp_needs_full_observations() -> None:
    with pytest.raises(ValueError, match=r"needs full MinAtar observations, got shape \(3, 10, 10\)"):
        MinAtarPOMDP(gym.make("BreakoutPOMDP-MinAtar"))


def test_pomdp_unknown_game() -> None:
    env = MinAtarEnv("breakout")
    env.game = "pong"
    with pytest.raises(ValueError, match=r"No POMDP channels for MinAtar game 'pong'"):
        MinAtarPOMDP(env)


def test_register_twice_is_harmless() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_minatar_envs()
        register_minatar_envs()
    assert all(env_id in gym.registry for env_id in IDS)


def test_ids_resolve_without_importing_the_package() -> None:
    """``gym.make("sb3_dreamer:<id>")`` in a fresh interpreter, where nothing imported sb3_dreamer before."""
    code = (
        "import sys, gymnasium as gym; assert 'sb3_dreamer' not in sys.modules; "
        "print(gym.make('sb3_dreamer:SpaceInvadersPOMDP-MinAtar').observation_space.shape)"
    )
    environment = {**os.environ, "SB3_DREAMER_NO_ZOO_HOOK": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    assert result.stdout.strip() == "(4, 10, 10)"
