"""Callbacks for DreamerV2 and DreamerV3 training runs."""

import os

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv


class ResumeCheckpointCallback(BaseCallback):
    """
    Keep a resumable checkpoint of a DreamerV2 or DreamerV3 run (see ``save_checkpoint``): weights, optimizers,
    counters, replay buffer and random generator states, replaced every ``save_freq`` env steps and when
    training ends (atomically: a run killed while it saves leaves the previous checkpoint). Saves happen between a
    training phase and the next collection (``_on_rollout_start``), the point from which a resumed run continues as
    the interrupted one would have; with ``save_freq`` a multiple of ``train_freq`` they fall on multiples of
    ``save_freq``.

    Resume with ``DreamerV2.load_checkpoint(save_path, env)`` (or ``DreamerV3``'s) and ``learn(remaining,
    reset_num_timesteps=False)``, or through the RL Zoo with ``-i SAVE_PATH/model.zip`` (``-n`` is then the total budget).
    In the zoo: ``--hyperparams "callback:[{'sb3_dreamer.ResumeCheckpointCallback': dict(save_freq=10000,
    save_path='ckpt')}]"``.

    :param save_freq: env steps (all envs together, like ``num_timesteps``) between two checkpoints
    :param save_path: the checkpoint (a link to the directory of the last one, see ``save_checkpoint``)
    :param save_env: also save the gym envs (to continue their episodes; they must pickle)
    :param verbose: 1 to print a line per checkpoint
    :param evaluation_env: an evaluation env whose state each checkpoint keeps too (the RL Zoo plug-in gives it its
        ``EvalCallback``'s), so that a resumed run evaluates as the uninterrupted one would have
    """

    def __init__(
        self,
        save_freq: int,
        save_path: str | os.PathLike,
        save_env: bool = False,
        verbose: int = 0,
        evaluation_env: VecEnv | None = None,
    ) -> None:
        super().__init__(verbose)
        # YAML files spell large numbers as floats (1e4)
        if isinstance(save_freq, bool) or not isinstance(save_freq, int | float) or save_freq < 1 or save_freq % 1:
            raise ValueError(f"save_freq must be a positive whole number of env steps, got {save_freq!r}")
        self.save_freq = int(save_freq)
        self.save_path = save_path
        self.save_env = save_env
        self.evaluation_env = evaluation_env
        self._next_save = self._next_multiple(0)
        self._saved_at: int | None = None

    def _init_callback(self) -> None:
        if not hasattr(self.model, "save_checkpoint"):
            raise TypeError(f"ResumeCheckpointCallback needs a model with save_checkpoint(), got {type(self.model).__name__}")
        # A resumed run saves at the next multiple of save_freq, not at once
        self._next_save = self._next_multiple(self.model.num_timesteps)

    def _next_multiple(self, timesteps: int) -> int:
        """The first multiple of ``save_freq`` after ``timesteps``."""
        return (timesteps // self.save_freq + 1) * self.save_freq

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps >= self._next_save:
            self._save()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        # The zoo calls this again after learn(), and on Ctrl-C: a checkpoint of the interrupted run
        if self.model.num_timesteps != self._saved_at:
            self._save()

    def _save(self) -> None:
        self.model.save_checkpoint(  # type: ignore[attr-defined]
            self.save_path, save_env=self.save_env, evaluation_env=self.evaluation_env
        )
        self._saved_at = self.model.num_timesteps
        self._next_save = self._next_multiple(self._saved_at)
        if self.verbose >= 1:
            print(f"Saving a checkpoint at {self._saved_at} timesteps to {self.save_path}")
