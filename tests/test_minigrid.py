"""MiniGrid, the optional extra: the one-hot image wrapper, DreamerV2 on it, and the packaged RL Zoo entries."""

import sys
import warnings
from itertools import pairwise
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from conftest import TINY_POLICY, ZOO_TINY, ZOO_TINY_POLICY_KWARGS, run, tiny_model
from gymnasium.utils.env_checker import check_env
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.wrappers import ImgObsWrapper, ViewSizeWrapper

from sb3_dreamer import DreamerV2
from sb3_dreamer.envs.minigrid import MiniGridOneHotImage

ENV_ID = "MiniGrid-DoorKey-5x5-v0"
GROUP_SIZES = (len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX))
# Channels of the object, colour and state one-hot groups
GROUPS = [slice(start, end) for start, end in pairwise(np.cumsum((0, *GROUP_SIZES)))]
PACKAGED_YAML = Path("sb3_dreamer", "zoo", "hyperparams", "dreamerv2.yml")
REPO = Path(__file__).resolve().parents[1]


def decode(one_hot: np.ndarray) -> np.ndarray:
    """(C, V, V) one-hot image indexed [c, y, x] -> (V, V, 3) MiniGrid image indexed [x, y]"""
    return np.stack([one_hot[group].argmax(axis=0) for group in GROUPS], axis=-1).transpose(1, 0, 2)


def test_importing_sb3_dreamer_does_not_import_minigrid(tmp_path: Path) -> None:
    code = "import sys, sb3_dreamer, sb3_dreamer.envs.minigrid; assert 'minigrid' not in sys.modules, 'minigrid imported'"
    run(["-c", code], tmp_path)


def test_space_and_one_hot_values() -> None:
    env, raw = MiniGridOneHotImage(gym.make(ENV_ID)), gym.make(ENV_ID)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box) and space.dtype == np.uint8
    assert space.shape == (sum(GROUP_SIZES), 7, 7) == (20, 7, 7)
    assert np.all(space.low == 0) and np.all(space.high == 1)
    assert env.action_space == raw.action_space
    actions = np.random.default_rng(0).integers(env.action_space.n, size=300)
    obs, raw_obs = env.reset(seed=0)[0], raw.reset(seed=0)[0]
    for action in actions:
        assert obs in space and obs.flags.c_contiguous and set(np.unique(obs)) <= {0, 1}
        # One channel set per cell in each group: the one-hot image is MiniGrid's image, channels first
        for group in GROUPS:
            np.testing.assert_array_equal(obs[group].sum(axis=0), np.ones((7, 7)))
        np.testing.assert_array_equal(decode(obs), raw_obs["image"])
        obs, reward, terminated, truncated, _ = env.step(action)
        raw_obs, *raw_outcome, _ = raw.step(action)
        assert [reward, terminated, truncated] == raw_outcome
        if terminated or truncated:
            obs, raw_obs = env.reset()[0], raw.reset()[0]


def test_agent_view_size() -> None:
    env = MiniGridOneHotImage(ViewSizeWrapper(gym.make(ENV_ID), agent_view_size=5))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == obs.shape == (20, 5, 5) and obs in env.observation_space


def test_check_env() -> None:
    env = MiniGridOneHotImage(gym.make(ENV_ID))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")  # wrapped on purpose
        warnings.filterwarnings("ignore", module="pygame")  # fonts missing on the machine
        check_env(env)
    remade = gym.make(env.spec)  # the spec records the wrapper
    assert remade.observation_space == env.observation_space


def test_missing_minigrid_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    env = gym.make(ENV_ID)
    monkeypatch.setitem(sys.modules, "minigrid.core.constants", None)  # as if minigrid were not installed
    with pytest.raises(ImportError, match=r'optional extra: pip install "sb3-dreamer\[minigrid\]"'):
        MiniGridOneHotImage(env)


@pytest.mark.parametrize(
    "make_env, name",
    [
        (lambda: gym.make("CartPole-v1"), "CartPole-v1"),
        (lambda: ImgObsWrapper(gym.make(ENV_ID)), ENV_ID),
    ],
    ids=["not-minigrid", "image-already-extracted"],
)
def test_needs_minigrid_dict_observations(make_env, name: str) -> None:
    with pytest.raises(ValueError, match=rf"needs a MiniGrid env whose observations are a Dict with an 'image' entry.*{name}"):
        MiniGridOneHotImage(make_env())


def test_out_of_range_cell_attributes() -> None:
    env = MiniGridOneHotImage(gym.make(ENV_ID))
    env.reset(seed=0)
    image = env.unwrapped.gen_obs()["image"]
    image[0, 0, 2] = len(STATE_TO_IDX)  # a direction of 3, as FullyObsWrapper stores in the agent's cell
    with pytest.raises(ValueError, match=r"cell attributes out of range.*got maxima \[\d+, \d+, 3\]"):
        env.observation({"image": image})


def test_dreamerv2_trains_and_save_load_keeps_predictions(tmp_path: Path) -> None:
    env = MiniGridOneHotImage(gym.make(ENV_ID))
    model = tiny_model(env, policy_kwargs={**TINY_POLICY, "cnn_kernel_size": 2}).learn(300)
    assert model.num_timesteps >= 300 and model._n_updates > 0
    assert model.replay_buffer.pack_observations  # binary images are stored bit-packed
    model.save(tmp_path / "model.zip")
    loaded = DreamerV2.load(tmp_path / "model.zip")
    assert loaded.policy.cnn_kernel_size == 2 and loaded.observation_space == env.observation_space
    obs, _ = env.reset(seed=1)
    state_a = state_b = None
    for step in range(20):
        start = np.array([step == 0])
        action_a, state_a = model.predict(obs, state=state_a, episode_start=start, deterministic=True)
        action_b, state_b = loaded.predict(obs, state=state_b, episode_start=start, deterministic=True)
        assert action_a == action_b
        for a, b in zip(state_a, state_b, strict=True):
            np.testing.assert_array_equal(a, b)
        obs, *_ = env.step(action_a)


def test_zoo_entries_have_the_reference_settings() -> None:
    with open(REPO / PACKAGED_YAML) as file:
        entries = yaml.safe_load(file)
    entry = entries["MiniGrid-DoorKey-5x5-v0"]
    assert entries["MiniGrid-Empty-8x8-v0"] == entry
    assert eval(entry["policy_kwargs"]) == dict(
        deter_size=100, stoch_size=16, class_size=16, embedding_dim=100, rssm_hidden_size=100, cnn_kernel_size=2
    )
    expected = dict(
        n_timesteps=1e6,
        policy="CnnPolicy",
        env_wrapper="sb3_dreamer.envs.minigrid.MiniGridOneHotImage",
        env_kwargs={"max_steps": 1000},
        train_freq=5,
        sequence_length=8,
        batch_size=50,
        imagination_horizon=8,
        kl_scale=1.0,
        discount_scale=10.0,
        actor_entropy_scale=1e-3,
        target_update_interval=50,
        exploration_decay_steps=3500,  # the reference's epsilon 0.4 - step / 10000 reaches its floor 0.05 there
    )
    assert {name: entry[name] for name in expected} == expected


@pytest.mark.timeout(300)
def test_zoo_train(tmp_path: Path) -> None:
    env_id = "MiniGrid-Empty-8x8-v0"
    tiny = [hyperparameter for hyperparameter in ZOO_TINY if not hyperparameter.startswith("policy_kwargs")]
    tiny.append(f"policy_kwargs:dict({ZOO_TINY_POLICY_KWARGS},cnn_kernel_size=2)")
    args = ["train", "--algo", "dreamerv2", "--env", env_id, "-n", "300", "--seed", "1", "--hyperparams", *tiny]
    result = run(["-m", "sb3_dreamer.zoo", *args], tmp_path)
    assert "Loading hyperparameters from: " in result.stdout and str(PACKAGED_YAML) in result.stdout
    assert "env_kwargs={'max_steps': 1000}" in result.stdout
    path = tmp_path / "logs" / "dreamerv2" / f"{env_id}_1"
    with open(path / env_id / "config.yml") as file:
        config = yaml.load(file, Loader=yaml.UnsafeLoader)
    # The packaged entry, overridden by --hyperparams
    assert config["env_wrapper"] == "sb3_dreamer.envs.minigrid.MiniGridOneHotImage"
    assert config["kl_scale"] == 1.0 and config["target_update_interval"] == 50 and config["train_freq"] == 16
    model = DreamerV2.load(path / f"{env_id}.zip")
    assert model.observation_space.shape == (20, 7, 7) and model.policy.cnn_kernel_size == 2
    assert model.policy.deter_size == 16 and model.num_timesteps >= 300
