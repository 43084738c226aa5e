"""
RL Zoo plug-in: the unmodified ``rl_zoo3`` scripts with ``--algo dreamerv2``, each run in a fresh interpreter.

These tests need the package installed with its start-up hook (``pip install -e .`` or ``pip install .``).
"""

import argparse
import pickle
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import optuna
import pytest
import rl_zoo3
import torch as th
import yaml
from conftest import ZOO_TINY, constructor_defaults, run

from sb3_dreamer import DreamerV2
from sb3_dreamer.dreamerv2 import DreamerV2Policy

REPO = Path(__file__).resolve().parents[1]
ENV_ID = "Breakout-MinAtar"
# Evaluation episodes of an untrained deterministic agent may otherwise last up to the 10,000-step time limit
SHORT_EPISODES = ("--env-kwargs", "max_episode_steps:200")


def zoo(script: str, cwd: Path, *args: str, env_id: str = ENV_ID, **kwargs) -> subprocess.CompletedProcess:
    """``python -m rl_zoo3.<script> --algo dreamerv2 --env <env_id> <args>``"""
    return run(["-m", f"rl_zoo3.{script}", "--algo", "dreamerv2", "--env", env_id, *args], cwd, **kwargs)


class Experiment(NamedTuple):
    """A zoo experiment: the working directory of ``rl_zoo3.train`` and its output."""

    cwd: Path
    stdout: str

    @property
    def path(self) -> Path:
        return self.cwd / "logs" / "dreamerv2" / f"{ENV_ID}_1"


def test_hyperparams_files() -> None:
    games = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")
    env_ids = {f"{game}{variant}-MinAtar" for game in games for variant in ("", "POMDP")}
    packaged = REPO / "sb3_dreamer" / "zoo" / "hyperparams" / "dreamerv2.yml"
    # Every file is installed with the package; the repository's hyperparams/ links to them
    for algo in ("dreamerv2", "dreamerv2_official", "ppo", "dqn", "qrdqn", "sac"):
        link = REPO / "hyperparams" / f"{algo}.yml"
        assert link.is_symlink() and link.resolve() == packaged.with_name(f"{algo}.yml").resolve(), algo
    minigrid_ids = {"MiniGrid-DoorKey-5x5-v0", "MiniGrid-Empty-8x8-v0"}  # DreamerV2 only, checked in test_minigrid.py
    continuous_ids = {"Pendulum-v1"}  # DreamerV2 only, checked in test_continuous.py
    first_result_ids = {"CartPole-v1"}  # DreamerV2 only: the README's first result in minutes
    for algo in ("dreamerv2", "ppo", "dqn", "qrdqn"):
        with open(REPO / "hyperparams" / f"{algo}.yml") as file:
            entries = yaml.safe_load(file)
        dreamerv2_only = minigrid_ids | continuous_ids | first_result_ids
        assert set(entries) == env_ids | (dreamerv2_only if algo == "dreamerv2" else set()), algo
        minatar_entries = [entries[env_id] for env_id in env_ids]
        assert all(entry["n_timesteps"] == 5e6 and entry["policy"] == "CnnPolicy" for entry in minatar_entries), algo
    # DreamerV2's entries spell out the reference settings, which are the defaults of DreamerV2 and its policy, but for
    # the four that benchmarks/minatar-100k.md measured
    with open(packaged) as file:
        entry = yaml.safe_load(file)[ENV_ID]
    assert (entry.pop("batch_size"), entry.pop("train_freq"), entry.pop("actor_entropy_scale")) == (16, 25, 3e-2)
    policy_kwargs = eval(entry.pop("policy_kwargs"))
    assert policy_kwargs.pop("part_init") == "part"
    assert {"learning_rate", "actor_learning_rate", "critic_learning_rate", "imagination_horizon", "kl_scale"} <= set(entry)
    assert {"deter_size", "stoch_size", "class_size"} <= set(policy_kwargs)
    hyperparams = {name: value for name, value in entry.items() if name not in ("n_timesteps", "policy", "n_envs")}
    for cls, values in ((DreamerV2, hyperparams), (DreamerV2Policy, policy_kwargs)):
        defaults = constructor_defaults(cls)
        assert {name: defaults.get(name) for name in values} == values, cls.__name__
    # SAC's Pendulum-v1 entry, the baseline of benchmarks/pendulum.md, is the RL Zoo's own
    with open(REPO / "hyperparams" / "sac.yml") as file:
        ours = yaml.safe_load(file)
    with open(Path(rl_zoo3.__file__).parent / "hyperparams" / "sac.yml") as file:
        assert ours == {"Pendulum-v1": yaml.safe_load(file)["Pendulum-v1"]}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Experiment:
    """The README's ``python -m rl_zoo3.train --algo dreamerv2 --env Breakout-MinAtar``, tiny, with every zoo output."""
    cwd = tmp_path_factory.mktemp("zoo")
    args = ["-n", "300", "--seed", "1", "--eval-freq", "150", "--eval-episodes", "2", "--save-freq", "150", *SHORT_EPISODES]
    # The zoo's linear schedule syntax, which it reads for learning_rate only, for the entropy scale too
    hyperparams = [*ZOO_TINY, "actor_entropy_scale:'lin_0.03'"]
    result = zoo("train", cwd, *args, "--tensorboard-log", "tb", "--save-replay-buffer", "--hyperparams", *hyperparams)
    return Experiment(cwd, result.stdout)


@pytest.mark.timeout(300)
def test_train(experiment: Experiment) -> None:
    packaged_yaml = Path("sb3_dreamer", "zoo", "hyperparams", "dreamerv2.yml")
    assert "Loading hyperparameters from: " in experiment.stdout and str(packaged_yaml) in experiment.stdout
    path = experiment.path
    for name in (f"{ENV_ID}.zip", "best_model.zip", "rl_model_150_steps.zip", "rl_model_300_steps.zip", "replay_buffer.pkl"):
        assert (path / name).is_file(), name
    with open(path / ENV_ID / "config.yml") as file:
        config = yaml.load(file, Loader=yaml.UnsafeLoader)
    # Defaults from the packaged YAML, overridden by --hyperparams
    assert config["learning_rate"] == 2e-4 and config["kl_scale"] == 0.1 and config["policy"] == "CnnPolicy"
    assert config["batch_size"] == 4 and config["policy_kwargs"]["deter_size"] == 16
    evaluations = np.load(path / "evaluations.npz")
    assert evaluations["timesteps"].tolist() == [150, 300] and evaluations["results"].shape == (2, 2)
    assert list((experiment.cwd / "tb" / ENV_ID / "DreamerV2_1").glob("events.out.tfevents.*"))
    model = DreamerV2.load(path / f"{ENV_ID}.zip")
    assert model.policy.deter_size == 16 and model.num_timesteps >= 300
    assert [model.actor_entropy_schedule(progress) for progress in (1.0, 0.5, 0.0)] == [0.03, 0.015, 0.0]


@pytest.mark.timeout(300)
def test_enjoy_and_record_video(experiment: Experiment) -> None:
    result = zoo("enjoy", experiment.cwd, "-f", "logs", "--exp-id", "1", "--no-render", "-n", "50")
    assert f"Loading logs/dreamerv2/{ENV_ID}_1/{ENV_ID}.zip" in result.stdout and "Episode Length" in result.stdout
    zoo("record_video", experiment.cwd, "-f", "logs", "--exp-id", "1", "-n", "30")
    assert list((experiment.path / "videos").glob("*.mp4"))


@pytest.mark.timeout(300)
def test_resume_with_replay_buffer(experiment: Experiment) -> None:
    trained = experiment.path / f"{ENV_ID}.zip"
    # Fewer steps than learning_starts: the resumed run only collects data, so the model must come out unchanged
    args = ["-n", "50", "--seed", "2", "-i", str(trained.relative_to(experiment.cwd)), "--save-replay-buffer"]
    result = zoo("train", experiment.cwd, *args, "--hyperparams", *ZOO_TINY)
    assert "Loading pretrained agent" in result.stdout and "Loading replay buffer" in result.stdout
    resumed_path = experiment.cwd / "logs" / "dreamerv2" / f"{ENV_ID}_2"
    resumed = DreamerV2.load(resumed_path / f"{ENV_ID}.zip")
    original = DreamerV2.load(trained)
    assert resumed.policy.deter_size == 16
    for name, tensor in original.policy.state_dict().items():
        assert th.equal(tensor, resumed.policy.state_dict()[name]), name
    buffers = []
    for path in (experiment.path, resumed_path):
        with open(path / "replay_buffer.pkl", "rb") as file:
            buffers.append(pickle.load(file))
    assert buffers[1].size() >= buffers[0].size() + 50


@pytest.mark.timeout(300)
def test_resume_from_checkpoint(tmp_path: Path) -> None:
    callback = "callback:[{'sb3_dreamer.ResumeCheckpointCallback': dict(save_freq=100, save_path='ckpt')}]"
    args = ["--seed", "1", "--eval-freq", "100", "--eval-episodes", "2", *SHORT_EPISODES, "--tensorboard-log", "tb"]
    zoo("train", tmp_path, "-n", "200", *args, "--hyperparams", *ZOO_TINY, callback)
    first = DreamerV2.load_checkpoint(tmp_path / "ckpt", env=DreamerV2.load(tmp_path / "ckpt" / "model.zip").env)
    assert first.num_timesteps == 208  # the end of the last 16-step rollout
    # -n is the total budget: the resumed run trains from 208 to 400 frames, continuing every count
    result = zoo("train", tmp_path, "-n", "400", *args, "-i", "ckpt/model.zip", "--hyperparams", *ZOO_TINY, callback)
    assert "Resuming from the checkpoint in ckpt at 208 timesteps, to 400" in result.stdout
    resumed = DreamerV2.load(tmp_path / "logs" / "dreamerv2" / f"{ENV_ID}_2" / f"{ENV_ID}.zip")
    assert resumed.num_timesteps == 400 and resumed._n_updates > first._n_updates
    evaluations = np.load(tmp_path / "logs" / "dreamerv2" / f"{ENV_ID}_2" / "evaluations.npz")
    # Evaluations stay on the multiples of --eval-freq, as in an uninterrupted run
    assert evaluations["timesteps"].tolist() == [300, 400]
    last = DreamerV2.load_checkpoint(tmp_path / "ckpt", env=resumed.env)
    # The replay buffer went on from the checkpoint's (a row per step, plus one per episode start)
    assert last.num_timesteps == 400 and last.replay_buffer.size() >= first.replay_buffer.size() + 192
    assert [path.name for path in (tmp_path / "tb" / ENV_ID).iterdir()] == ["DreamerV2_1"]


def monitor_episodes(part: Path) -> list[tuple[float, int]]:
    """(return, length) of the training episodes in the Monitor file of a zoo log folder."""
    lines = (part / "0.monitor.csv").read_text().splitlines()[2:]
    return [(float(line.split(",")[0]), int(line.split(",")[1])) for line in lines]


@pytest.mark.timeout(600)
def test_resumed_run_repeats_the_uninterrupted_one(tmp_path: Path) -> None:
    """Through the zoo, a run stopped at 208 steps and resumed from its checkpoint continues its training and
    evaluation episodes, and ends with the evaluations, episodes and weights of the same run left uninterrupted."""
    callback = "callback:[{'sb3_dreamer.ResumeCheckpointCallback': dict(save_freq=100, save_path='ckpt')}]"
    args = ["--seed", "4", "--eval-freq", "100", "--eval-episodes", "2", *SHORT_EPISODES, "--hyperparams", *ZOO_TINY]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir()
    parts.mkdir()
    zoo("train", whole, "-n", "400", *args, callback)
    zoo("train", parts, "-n", "200", *args, callback)
    zoo("train", parts, "-n", "400", *args, callback, "-i", "ckpt/model.zip")

    logs = {name: root / "logs" / "dreamerv2" for name, root in (("whole", whole), ("parts", parts))}
    uninterrupted = np.load(logs["whole"] / f"{ENV_ID}_1" / "evaluations.npz")
    first, resumed = (np.load(logs["parts"] / f"{ENV_ID}_{part}" / "evaluations.npz") for part in (1, 2))
    assert uninterrupted["timesteps"].tolist() == [100, 200, 300, 400] and resumed["timesteps"].tolist() == [300, 400]
    np.testing.assert_array_equal(uninterrupted["results"], np.concatenate([first["results"], resumed["results"]]))
    np.testing.assert_array_equal(uninterrupted["ep_lengths"], np.concatenate([first["ep_lengths"], resumed["ep_lengths"]]))
    # The episode under way at the checkpoint goes on: the Monitor files hold the same episodes
    episodes = monitor_episodes(logs["parts"] / f"{ENV_ID}_1") + monitor_episodes(logs["parts"] / f"{ENV_ID}_2")
    assert monitor_episodes(logs["whole"] / f"{ENV_ID}_1") == episodes and len(episodes) >= 2
    models = [DreamerV2.load(logs[name] / f"{ENV_ID}_{part}" / f"{ENV_ID}.zip") for name, part in (("whole", 1), ("parts", 2))]
    assert models[0].num_timesteps == models[1].num_timesteps == 400
    for name, tensor in models[0].policy.state_dict().items():
        assert th.equal(tensor, models[1].policy.state_dict()[name]), name


@pytest.mark.timeout(300)
def test_optimize_shared_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'dreamer.db'}"
    args = ["-optimize", "--sampler", "random", "--pruner", "none", "-n", "170", "--eval-episodes", "2", "--no-optim-plots"]
    args += ["--n-jobs", "1", "--storage", storage, "--study-name", "dreamer", *SHORT_EPISODES]
    # Tune the latent sizes of an otherwise tiny model: the sampled sizes are merged into these policy_kwargs
    tiny = [hyperparameter for hyperparameter in ZOO_TINY if not hyperparameter.startswith("policy_kwargs")]
    tiny.append("policy_kwargs:dict(embedding_dim=16,rssm_hidden_size=16,cnn_depth=4,head_units=16,head_layers=1)")
    # A few updates at most, whatever the sampled train ratio and latent sizes
    tiny.append("learning_starts:150")
    # Two processes, one after the other, fill the same study
    pomdp = "BreakoutPOMDP-MinAtar"
    zoo("train", tmp_path, *args, "--n-trials", "2", "--optimization-log-path", "trials", "--hyperparams", *tiny, env_id=pomdp)
    zoo("train", tmp_path, *args, "--n-trials", "1", "--seed", "1", "--hyperparams", *tiny, env_id=pomdp)
    study = optuna.load_study(study_name="dreamer", storage=storage)
    trials = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert len(trials) == 3
    assert {"learning_rate", "train_freq", "gradient_steps", "imagination_horizon", "deter_size"} <= set(trials[0].params)
    model = DreamerV2.load(tmp_path / "trials" / "trial_0" / "best_model.zip")
    assert model.policy.cnn_depth == 4 and model.policy.deter_size == trials[0].params["deter_size"]
    assert model.gradient_steps == trials[0].params["gradient_steps"]


def test_search_space_is_centred_on_the_packaged_settings() -> None:
    from sb3_dreamer.zoo.hyperparams_opt import MAX_UPDATES_PER_STEP, sample_dreamerv2_params

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trials = [study.ask() for _ in range(200)]
    samples = [sample_dreamerv2_params(trial, 0, 1, {}) for trial in trials]
    entropy_scales = [sample["actor_entropy_scale"] for sample in samples]
    assert 3e-3 <= min(entropy_scales) < 5e-3 and 6e-2 < max(entropy_scales) <= 1e-1
    # Log-uniform: about as many samples below the geometric middle of the range as above it
    assert 70 < sum(scale < (3e-3 * 1e-1) ** 0.5 for scale in entropy_scales) < 130
    assert {sample["train_freq"] for sample in samples} == {25, 50}
    # A trial costs at most the packaged settings per env step: updates, latent and GRU sizes
    assert max(sample["gradient_steps"] / sample["train_freq"] for sample in samples) == MAX_UPDATES_PER_STEP
    policy_kwargs = [sample["policy_kwargs"] for sample in samples]
    assert max(kwargs["stoch_size"] * kwargs["class_size"] for kwargs in policy_kwargs) == 20 * 20
    assert max(kwargs["deter_size"] for kwargs in policy_kwargs) == 200
    assert all("batch_size" not in sample for sample in samples)
    # The packaged MinAtar settings are in the space
    with open(REPO / "sb3_dreamer" / "zoo" / "hyperparams" / "dreamerv2.yml") as file:
        entry = yaml.safe_load(file)[ENV_ID]
    packaged = {**entry, **eval(entry["policy_kwargs"])}
    for name, distribution in trials[0].distributions.items():
        assert distribution._contains(distribution.to_internal_repr(packaged[name])), name
    assert entry["batch_size"] == 16


@pytest.mark.timeout(300)
def test_optimize_prunes_a_diverging_trial(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'dreamer.db'}"
    study = optuna.create_study(study_name="dreamer", storage=storage, direction="maximize")
    # The first trial's world model steps by 1e30 in its first update: the actor's and critic's losses are not finite
    study.enqueue_trial({"learning_rate": 1e30, "train_freq": 25, "gradient_steps": 2})
    study.enqueue_trial({"train_freq": 25, "gradient_steps": 1, "deter_size": 100, "stoch_size": 16, "class_size": 16})
    args = ["-optimize", "--sampler", "random", "--pruner", "none", "-n", "170", "--eval-episodes", "2", "--no-optim-plots"]
    args += ["--n-jobs", "1", "--n-trials", "2", "--storage", storage, "--study-name", "dreamer", *SHORT_EPISODES]
    result = zoo("train", tmp_path, *args, "--hyperparams", *ZOO_TINY, "learning_starts:150", "recovery_dir:None")
    # The zoo prints the error of a pruned trial, and the study goes on
    assert "Non-finite" in result.stdout and "training stopped" in result.stdout
    states = [trial.state for trial in optuna.load_study(study_name="dreamer", storage=storage).trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]


@pytest.mark.timeout(300)
def test_explicit_entry_point(tmp_path: Path) -> None:
    args = ["train", "--algo", "dreamerv2", "--env", ENV_ID, "-n", "200", "--eval-freq", "100", "--eval-episodes", "1"]
    args += [*SHORT_EPISODES, "--hyperparams", *ZOO_TINY]
    # The explicit entry point needs no start-up hook
    run(["-m", "sb3_dreamer.zoo", *args], tmp_path, env={"SB3_DREAMER_NO_ZOO_HOOK": "1"})
    path = tmp_path / "logs" / "dreamerv2" / f"{ENV_ID}_1"
    assert (path / f"{ENV_ID}.zip").is_file() and (path / ENV_ID / "config.yml").is_file()
    assert np.load(path / "evaluations.npz")["timesteps"].tolist() == [100, 200]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "algo, env_id, hyperparams",
    [
        ("ppo", "Breakout-MinAtar", ["n_envs:2", "n_steps:64", "batch_size:64"]),
        ("dqn", "SpaceInvadersPOMDP-MinAtar", ["learning_starts:100", "buffer_size:1000", "train_freq:4"]),
        ("qrdqn", "Asterix-MinAtar", ["learning_starts:100", "buffer_size:1000", "train_freq:4"]),
    ],
)
def test_baselines(tmp_path: Path, algo: str, env_id: str, hyperparams: list[str]) -> None:
    # Outside the clone and without -conf, the zoo reads the installed file
    args = ["--algo", algo, "--env", env_id, "-n", "200", "--hyperparams", *hyperparams]
    result = run(["-m", "rl_zoo3.train", *args], tmp_path)
    packaged = REPO / "sb3_dreamer" / "zoo" / "hyperparams" / f"{algo}.yml"
    assert f"Loading hyperparameters from: {packaged}" in result.stdout
    model_path = tmp_path / "logs" / algo / f"{env_id}_1" / f"{env_id}.zip"
    assert model_path.is_file()
    with open(model_path.parent / env_id / "config.yml") as file:
        assert "MinAtarCNN" in dict(yaml.unsafe_load(file))["policy_kwargs"]


def test_default_config() -> None:
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_dreamer.zoo.plugin import HYPERPARAMS_DIR

    def config(algo: str, env_id: str, **kwargs: str) -> Path:
        return Path(ExperimentManager(argparse.Namespace(), algo, env_id, "logs", **kwargs).config)

    zoo_files = Path(rl_zoo3.__file__).parent / "hyperparams"
    for algo in ("ppo", "dqn", "qrdqn"):
        assert config(algo, "SpaceInvadersPOMDP-MinAtar") == HYPERPARAMS_DIR / f"{algo}.yml"
        # The zoo's own files keep serving other env ids, and -conf wins
        assert config(algo, "CartPole-v1") == zoo_files / f"{algo}.yml"
    assert config("sac", "Pendulum-v1") == zoo_files / "sac.yml"
    assert config("a2c", "Breakout-MinAtar") == zoo_files / "a2c.yml"
    assert config("dqn", "Breakout-MinAtar", config="my.yml") == config("dreamerv2", "Breakout-MinAtar", config="my.yml")
    assert config("dqn", "Breakout-MinAtar", config="my.yml") == Path("my.yml")
    assert config("dreamerv2", "Breakout-MinAtar") == HYPERPARAMS_DIR / "dreamerv2.yml"


def test_startup_hook(tmp_path: Path) -> None:
    light = "import sys; assert not {'torch', 'numpy', 'gymnasium', 'sb3_dreamer'} & set(sys.modules), sorted(sys.modules)"
    run(["-c", light], tmp_path)
    has_dreamer = "import rl_zoo3; print('dreamerv2' in rl_zoo3.ALGOS)"
    assert run(["-c", has_dreamer], tmp_path).stdout.strip() == "True"
    assert run(["-c", has_dreamer], tmp_path, env={"SB3_DREAMER_NO_ZOO_HOOK": "1"}).stdout.strip() == "False"

    def start_up_time(env: dict[str, str]) -> float:
        start = time.perf_counter()
        run(["-c", "pass"], tmp_path, env=env)
        return time.perf_counter() - start

    with_hook, without_hook = [], []
    for _ in range(10):
        with_hook.append(start_up_time({}))
        without_hook.append(start_up_time({"SB3_DREAMER_NO_ZOO_HOOK": "1"}))
    assert min(with_hook) - min(without_hook) < 0.05


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "entry, message",
    [
        ("learnin_rate: !!float 1e-3", "unknown hyperparameter 'learnin_rate' (did you mean 'learning_rate'"),
        ("policy_kwargs: 'dict(deter_size=16'", "invalid policy_kwargs 'dict(deter_size=16' for Breakout-MinAtar in bad.yml"),
        ("policy_kwargs: 'dict(deter_sise=16)'", "argument 'deter_sise' in policy_kwargs (did you mean 'deter_size'"),
        ("actor_entropy_scale: exp_3e-2", "invalid actor_entropy_scale 'exp_3e-2' for Breakout-MinAtar in bad.yml"),
        ("critic_learning_rate: lin_x", "invalid critic_learning_rate 'lin_x' for Breakout-MinAtar in bad.yml"),
    ],
    ids=[
        "misspelt-hyperparameter",
        "policy-kwargs-syntax-error",
        "misspelt-policy-argument",
        "unknown-schedule",
        "bad-schedule-value",
    ],
)
def test_clear_errors(tmp_path: Path, entry: str, message: str) -> None:
    (tmp_path / "bad.yml").write_text(f"{ENV_ID}:\n  n_timesteps: 100\n  policy: 'CnnPolicy'\n  {entry}\n")
    result = zoo("train", tmp_path, "-conf", "bad.yml", check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-3000:]


@pytest.mark.timeout(300)
def test_unknown_env_id(tmp_path: Path) -> None:
    result = zoo("train", tmp_path, env_id="Breakout-MinAtr", check=False)
    message = "Breakout-MinAtr not found in gym registry, you maybe meant Breakout-MinAtar?"
    assert result.returncode != 0 and message in result.stderr, result.stderr[-3000:]
