from typing import Any, ClassVar, TypeVar

import torch as th
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, polyak_update

from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.common.buffers import SequenceReplayBuffer, SequenceSamples
from sb3_dreamer.common.checks import (
    check_booleans,
    check_non_negative,
    check_non_negative_integers,
    check_non_negative_schedules,
    check_positive_integers,
    check_probabilities,
)
from sb3_dreamer.common.guards import DREAMERV3_RECOVERY_DIR
from sb3_dreamer.dreamerv3.policies import CnnPolicy, DreamerV3Policy, MlpPolicy
from sb3_dreamer.world_model.model import WorldModelLossConfig
from sb3_dreamer.world_model.returns import lambda_return
from sb3_dreamer.world_model.rssm import LatentState, detached

SelfDreamerV3 = TypeVar("SelfDreamerV3", bound="DreamerV3")

#: Default episodes between two dumps of the logger in ``learn`` (as DreamerV2's)
LOG_INTERVAL = 50


def replay_returns(
    rewards: th.Tensor, terminated: th.Tensor, last: th.Tensor, bootstrap: th.Tensor, gamma: float, lambda_: float
) -> th.Tensor:
    """
    DreamerV3's replay lambda-returns, bootstrapped at every step from the imagination's returns:
    ``R_t = r_{t+1} + g_{t+1} ((1 - l_{t+1}) B_{t+1} + l_{t+1} R_{t+1})``, ``R_{T-1} = B_{T-1}``, with
    ``g = gamma (1 - terminated)`` and ``l = lambda (1 - last)``.

    :param rewards: r_t, the reward for arriving at row t, (T, B)
    :param terminated: 1.0 where row t is terminal, (T, B)
    :param last: 1.0 where row t is the last of its episode in the window, (T, B)
    :param bootstrap: B_t, the lambda-return imagined from row t, (T, B)
    :param gamma: discount per step
    :param lambda_: weight of the longer returns
    :return: R_0 .. R_{T-2}, (T - 1, B)
    """
    live = gamma * (1.0 - terminated[1:])
    cont = lambda_ * (1.0 - last[1:])
    immediate = rewards[1:] + (1.0 - cont) * live * bootstrap[1:]
    returns = [bootstrap[-1]]
    for t in reversed(range(live.shape[0])):
        returns.append(immediate[t] + live[t] * cont[t] * returns[-1])
    return th.stack(returns[:0:-1])


class DreamerV3(DreamerAlgorithm):
    """
    DreamerV3: one configuration across domains, as in the current official code (danijar/dreamerv3, which matches the
    second arXiv version, https://arxiv.org/abs/2301.04104v2): the RMS-normalised world model with a block GRU,
    symexp two-hot reward and critic, KL with free bits, a REINFORCE actor with percentile return normalisation, the slow
    critic's regulariser, the replay value loss, and one LaProp optimizer with adaptive gradient clipping; see
    ``docs/dreamerv3.md`` for each choice and where this port differs.

    The actor explores by sampling (no epsilon-greedy, no action noise). ``Box`` action spaces get a Normal actor
    (:class:`~sb3_dreamer.world_model.distributions.BoundedNormalAction`) trained by REINFORCE too.

    :param policy: the policy model to use (CnnPolicy, MlpPolicy, ...)
    :param env: the environment to learn from (if registered in Gym, can be str)
    :param learning_rate: learning rate of the one optimizer, a constant or a schedule of the remaining progress
        (the optimizer adds its own linear warmup, see :class:`~sb3_dreamer.common.laprop.LaProp`); the world model's
        where ``actor_learning_rate`` or ``critic_learning_rate`` is given
    :param actor_learning_rate: learning rate of the actor, a constant or a schedule; None: ``learning_rate`` (the
        official code's one rate). The first arXiv version trained the world model at 1e-4 and the actor and critic at
        3e-5. Given either, the optimizer gets a parameter group per network (the policy's
        ``separate_learning_rates``)
    :param critic_learning_rate: learning rate of the critic, a constant or a schedule; None: ``learning_rate``
    :param buffer_size: replay capacity in observations (rows), split evenly between envs
    :param learning_starts: env steps of uniformly random actions before learning starts
    :param batch_size: number of sequences per gradient step (DreamerV3: 16)
    :param sequence_length: length of each replayed sequence (DreamerV3: 64)
    :param train_freq: update the model every ``train_freq`` env steps (per env)
    :param gradient_steps: gradient steps after each rollout. DreamerV3's ``train_ratio`` (replayed steps per env
        step) is ``gradient_steps * batch_size * sequence_length / (train_freq * n_envs)``; the defaults give 32
    :param gamma: discount per step, ``1 - 1 / 333``: the continue head learns ``gamma * (1 - terminated)``, so imagined
        trajectories are discounted through it; the replay value loss uses it directly
    :param return_lambda: lambda of the lambda-returns
    :param imagination_horizon: length of imagined trajectories
    :param dynamics_scale: weight of the dynamics KL, ``KL[sg(posterior) || prior]`` (DreamerV3: 1.0)
    :param representation_scale: weight of the representation KL, ``KL[posterior || sg(prior)]`` (DreamerV3: 0.1)
    :param free_bits: each KL, summed over the latents, is clipped below at this value per state (DreamerV3: 1.0)
    :param reward_scale: weight of the reward prediction loss
    :param continue_scale: weight of the continue prediction loss
    :param actor_entropy_scale: weight of the actor's entropy bonus, a constant or a schedule (DreamerV3: 3e-4)
    :param slow_critic_rate: the slow critic moves this fraction of the way to the critic after each gradient step
    :param slow_critic_regularizer: weight of the critic's cross-entropy towards the slow critic's values
    :param replay_critic_scale: weight of the critic's loss on replayed states, whose gradient reaches the world model
        (DreamerV3's ``repval``, 0.3); 0 disables it
    :param replay_context: DreamerV3's ``replay_context`` (1): the replay buffer keeps a model state with each row (the
        acting posterior, then the latest update's) and each replayed window gets this many rows in front of its
        ``sequence_length``, the last of whose states starts it; 0 starts every window from the initial state
    :param compile_losses: compile the losses' forward and backward passes with ``torch.compile`` (inductor) at the first
        update: on a CPU an update of ``size1m`` at batch 8 x 32 ran about 1.7 times faster, after a first update that
        compiled for minutes (``docs/performance.md``). The losses equal the eager ones within float32 rounding, not
        bit for bit
    :param mixed_precision: bfloat16 autocast of the gradient steps' forward passes: True, False or ``"auto"`` (where
        it is faster), as in :class:`~sb3_dreamer.DreamerV2`
    :param diagnostics_interval: every this many gradient steps, log world-model diagnostics (0 disables them)
    :param recovery_dir: where to save a recovery checkpoint when a NaN or infinity stops training (see
        :class:`~sb3_dreamer.DreamerV2`); None saves none
    :param replay_buffer_class: replay buffer class (a :class:`SequenceReplayBuffer` subclass)
    :param replay_buffer_kwargs: keyword arguments of the replay buffer
    :param stats_window_size: window size of the rollout logging (episodes)
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments of the policy on creation
    :param verbose: 0 no output, 1 info messages, 2 debug messages
    :param seed: seed of the pseudo random generators
    :param device: device (cpu, cuda, ...) on which the code should be run ("auto" picks the GPU if any)
    :param _init_setup_model: whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"CnnPolicy": CnnPolicy, "MlpPolicy": MlpPolicy}
    policy: DreamerV3Policy
    optimizer_names: ClassVar[tuple[str, ...]] = ("policy.optimizer",)
    #: DreamerV3 always normalises the actor's advantages by the return scale (saved with the model)
    normalize_returns = True
    #: no epsilon-greedy and no action noise: the actor's samples explore
    exploration_rate = 0.0
    exploration_noise = 0.0

    def __init__(
        self,
        policy: str | type[DreamerV3Policy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 4e-5,
        actor_learning_rate: float | Schedule | None = None,
        critic_learning_rate: float | Schedule | None = None,
        buffer_size: int = 1_000_000,
        learning_starts: int = 1024,
        batch_size: int = 16,
        sequence_length: int = 64,
        train_freq: int | tuple[int, str] = 32,
        gradient_steps: int = 1,
        gamma: float = 1.0 - 1.0 / 333,
        return_lambda: float = 0.95,
        imagination_horizon: int = 15,
        dynamics_scale: float = 1.0,
        representation_scale: float = 0.1,
        free_bits: float = 1.0,
        reward_scale: float = 1.0,
        continue_scale: float = 1.0,
        actor_entropy_scale: float | Schedule = 3e-4,
        slow_critic_rate: float = 0.02,
        slow_critic_regularizer: float = 1.0,
        replay_critic_scale: float = 0.3,
        replay_context: int = 1,
        compile_losses: bool = False,
        mixed_precision: str | bool = "auto",
        diagnostics_interval: int = 2000,
        recovery_dir: str | None = DREAMERV3_RECOVERY_DIR,
        replay_buffer_class: type[SequenceReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            sequence_length=sequence_length,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            gamma=gamma,
            return_lambda=return_lambda,
            imagination_horizon=imagination_horizon,
            actor_entropy_scale=actor_entropy_scale,
            tau=slow_critic_rate,
            mixed_precision=mixed_precision,
            compile_losses=compile_losses,
            diagnostics_interval=diagnostics_interval,
            recovery_dir=recovery_dir,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
        )
        self.actor_learning_rate = actor_learning_rate
        self.critic_learning_rate = critic_learning_rate
        if actor_learning_rate is not None or critic_learning_rate is not None:
            # The policy's optimizer then gets a group per network (as SB3 passes ``use_sde`` to its policies)
            self.policy_kwargs = {**self.policy_kwargs, "separate_learning_rates": True}
        self.dynamics_scale = dynamics_scale
        self.representation_scale = representation_scale
        self.free_bits = free_bits
        self.reward_scale = reward_scale
        self.continue_scale = continue_scale
        self.slow_critic_rate = slow_critic_rate
        self.slow_critic_regularizer = slow_critic_regularizer
        self.replay_critic_scale = replay_critic_scale
        self.replay_context = replay_context
        if _init_setup_model:
            self._setup_model()

    def _check_hyperparameters(self) -> None:
        check_non_negative_integers(replay_context=self.replay_context)
        self._check_training_settings()
        check_positive_integers(imagination_horizon=self.imagination_horizon)
        check_non_negative_integers(diagnostics_interval=self.diagnostics_interval)
        check_booleans(compile_losses=self.compile_losses)
        check_probabilities(gamma=self.gamma, return_lambda=self.return_lambda, slow_critic_rate=self.slow_critic_rate)
        check_non_negative(
            dynamics_scale=self.dynamics_scale,
            representation_scale=self.representation_scale,
            free_bits=self.free_bits,
            reward_scale=self.reward_scale,
            continue_scale=self.continue_scale,
            slow_critic_regularizer=self.slow_critic_regularizer,
            replay_critic_scale=self.replay_critic_scale,
        )
        if self.dynamics_scale + self.representation_scale <= 0:
            raise ValueError("dynamics_scale and representation_scale are both 0: the prior would never be trained")
        learning_rates = {"actor_learning_rate": self.actor_learning_rate, "critic_learning_rate": self.critic_learning_rate}
        check_non_negative_schedules(
            learning_rate=self.learning_rate,
            **{name: value for name, value in learning_rates.items() if value is not None},
            actor_entropy_scale=self.actor_entropy_scale,
        )

    def _setup_model(self) -> None:
        super()._setup_model()
        if self.replay_context > 0:
            rssm = self.policy.world_model.rssm
            self.replay_buffer.keep_latents(self.replay_context, rssm.deter_size, rssm.stoch_dim)
        kl_scale = self.dynamics_scale + self.representation_scale
        self.world_model_loss_config = WorldModelLossConfig(
            kl_scale=kl_scale,
            kl_balance=self.dynamics_scale / kl_scale,
            free_nats=0.0,
            free_bits=self.free_bits,
            reward_scale=self.reward_scale,
            discount_scale=self.continue_scale,
            continue_discount=self.gamma,
        )
        #: the learning rate schedule of each of the optimizer's groups, by name (one unnamed group: ``lr_schedule``)
        self.group_lr_schedules = {
            "world_model": self.lr_schedule,
            "actor": self.lr_schedule if self.actor_learning_rate is None else FloatSchedule(self.actor_learning_rate),
            "critic": self.lr_schedule if self.critic_learning_rate is None else FloatSchedule(self.critic_learning_rate),
        }
        #: :meth:`_losses`, compiled with ``compile_losses``
        self._loss_function = self._compiled(self._losses)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_loss_function", "group_lr_schedules"]

    def learn(
        self: SelfDreamerV3,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = LOG_INTERVAL,
        tb_log_name: str = "DreamerV3",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDreamerV3:
        """Collect ``total_timesteps`` env steps, training every ``train_freq`` steps (see :meth:`DreamerV2.learn`)."""
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _update_schedules(self) -> None:
        """Set each optimizer group's learning rate from its schedule; log them and the entropy scale."""
        progress = self._current_progress_remaining
        for group in self.policy.optimizer.param_groups:
            name = group.get("name", "world_model")
            group["lr"] = self.group_lr_schedules[name](progress)
            self.logger.record("train/learning_rate" if name == "world_model" else f"train/{name}_learning_rate", group["lr"])
        self.logger.record("train/actor_entropy_scale", self.actor_entropy_schedule(progress))

    def _gradient_step(self, samples: SequenceSamples, step: int) -> tuple[dict[str, th.Tensor], LatentState]:
        """One step of the optimizer on the sum of all losses (one backward pass), then the slow critic's update."""
        with self._autocast():
            loss, metrics, posterior = self._loss_function(samples, self._current_entropy_scale())
        policy = self.policy
        parameters = [p for group in policy.optimizer.param_groups for p in group["params"]]
        policy.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        metrics["total_grad_norm"] = th.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
        policy.optimizer.step()
        polyak_update(policy.critic.parameters(), policy.critic_target.parameters(), self.slow_critic_rate)
        return metrics, detached(posterior)

    def _losses(
        self, samples: SequenceSamples, entropy_scale: th.Tensor | float
    ) -> tuple[th.Tensor, dict[str, th.Tensor], LatentState]:
        """
        The world model's loss, the actor's and the critic's on trajectories imagined from every posterior state, and
        the critic's on the replayed states: their weighted sum, detached metrics and the posterior states (T * B, ...).

        :param entropy_scale: weight of the actor's entropy bonus, () or a float
        """
        world_model_loss, metrics, posterior = self.policy.world_model.loss(samples, self.world_model_loss_config)
        n_steps, batch_size = samples.rewards.shape
        actor_loss, critic_loss, returns, actor_critic_metrics = self._actor_critic_losses(posterior, entropy_scale)
        loss = world_model_loss + actor_loss + critic_loss
        metrics.update(actor_critic_metrics)
        if self.replay_critic_scale > 0:
            bootstrap = returns[0].detach().view(n_steps, batch_size)
            replay_loss = self._replay_critic_loss(posterior, samples, bootstrap)
            loss = loss + self.replay_critic_scale * replay_loss
            metrics["replay_critic_loss"] = replay_loss.detach()
        metrics["total_loss"] = loss.detach()
        return loss, metrics, posterior

    def _actor_critic_losses(
        self, start: LatentState, entropy_scale: th.Tensor | float
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, dict[str, th.Tensor]]:
        """
        Actor and critic losses on trajectories imagined from ``start`` (N, ...), their lambda-returns (H, N), metrics.

        :param entropy_scale: weight of the actor's entropy bonus, () or a float
        """
        policy = self.policy
        trajectory = policy.imagine(start, self.imagination_horizon)
        continues, values = trajectory.continues, trajectory.values  # (H + 1, N)
        returns = lambda_return(trajectory.rewards, values[1:], continues[1:], self.return_lambda)  # (H, N)
        # Weight of each imagined step: the predicted probability (times gamma^t) that the trajectory still runs
        weights = th.cumprod(continues, dim=0)[:-1]  # (H, N)
        scale = self.return_scale.update(returns)
        advantages = (returns - values[:-1]) / scale
        action_dist = policy.action_dist
        log_probs = action_dist.log_prob(trajectory.action_params, trajectory.actions)  # (H, N)
        entropy = action_dist.entropy(trajectory.action_params, trajectory.actions)  # (H, N)
        actor_loss = -(weights * (log_probs * advantages + entropy_scale * entropy)).mean()
        value_dist = policy.value_dist
        value_losses = value_dist.loss(trajectory.value_outputs, returns) + self.slow_critic_regularizer * value_dist.loss(
            trajectory.value_outputs, trajectory.slow_values
        )
        critic_loss = (weights * value_losses).mean()
        metrics = {
            "actor_loss": actor_loss.detach(),
            "critic_loss": critic_loss.detach(),
            "actor_entropy": entropy.detach().mean(),
            "imagined_reward_mean": trajectory.rewards.mean(),
            "lambda_return_mean": returns.mean(),
            "lambda_return_std": returns.std(),
            "return_scale": scale,
            "value_mean": values.mean(),
            "slow_value_mean": trajectory.slow_values.mean(),
            "imagined_continue_mean": continues.mean(),
        }
        return actor_loss, critic_loss, returns, metrics

    def _replay_critic_loss(self, posterior: LatentState, samples: SequenceSamples, bootstrap: th.Tensor) -> th.Tensor:
        """
        DreamerV3's ``repval``: the critic's cross-entropy on the replayed posterior states (T, B) towards their replay
        lambda-returns (:func:`replay_returns`), plus the slow critic regulariser; its gradient reaches the world model
        through the states. Rows that end their episode in the window, whose returns would cross into the next
        episode, get weight 0; so does the last row.
        """
        n_steps, batch_size = samples.rewards.shape
        policy, value_dist = self.policy, self.policy.value_dist
        # A row is the last of its episode if it is terminal or the next row starts another episode
        last = th.cat([samples.is_first[1:], th.zeros_like(samples.is_first[:1])]).maximum(samples.terminated)
        returns = replay_returns(samples.rewards, samples.terminated, last, bootstrap, self.gamma, self.return_lambda)
        states = LatentState(*(x.view(n_steps, batch_size, -1)[:-1].flatten(0, 1) for x in posterior))
        outputs = policy.critic(states)  # ((T - 1) * B, bins)
        with th.no_grad():
            slow_values = value_dist.predict(policy.critic_target(states))
        losses = value_dist.loss(outputs, returns.flatten()) + self.slow_critic_regularizer * value_dist.loss(
            outputs, slow_values
        )
        return ((1.0 - last[:-1].flatten()) * losses).mean()
