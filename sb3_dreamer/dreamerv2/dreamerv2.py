from typing import Any, ClassVar, TypeVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, polyak_update, update_learning_rate

from sb3_dreamer.common.base_class import DreamerAlgorithm
from sb3_dreamer.common.buffers import SequenceReplayBuffer, SequenceSamples
from sb3_dreamer.common.checks import (
    check_booleans,
    check_non_negative,
    check_non_negative_integers,
    check_non_negative_schedules,
    check_positive,
    check_positive_integers,
    check_probabilities,
)
from sb3_dreamer.common.guards import DEFAULT_RECOVERY_DIR
from sb3_dreamer.dreamerv2.policies import CnnPolicy, DreamerV2Policy, MlpPolicy
from sb3_dreamer.world_model.model import WorldModelLossConfig
from sb3_dreamer.world_model.returns import lambda_return
from sb3_dreamer.world_model.rssm import LatentState, detached

SelfDreamerV2 = TypeVar("SelfDreamerV2", bound="DreamerV2")

ACTOR_GRADIENTS = ("reinforce", "dynamics", "both")
TARGET_UPDATE_UNITS = ("env_steps", "gradient_steps")
#: transforms of the replayed rewards that the world model learns to predict (the official DreamerV2's clip_rewards)
REWARD_TRANSFORMS = {"identity": None, "tanh": th.tanh, "sign": th.sign}
#: Default episodes between two dumps of the logger in ``learn`` (SB3's 4 floods the console on MinAtar's short episodes)
LOG_INTERVAL = 50


class DreamerV2(DreamerAlgorithm):
    """
    DreamerV2: a world model with discrete latents learned from replayed sequences, and an actor-critic
    trained on trajectories imagined by that model.

    Paper: "Mastering Atari with Discrete World Models", Hafner et al. 2020, https://arxiv.org/abs/2010.02193
    Hyperparameter defaults and networks are those of the PyTorch DreamerV2 for MinAtar this package replaces; its
    returns and losses index time steps as the official DreamerV2 and DreamerV3 (``docs/algorithm.md``).

    ``Discrete`` action spaces get a categorical actor with epsilon-greedy exploration; bounded ``Box`` action spaces
    a tanh-Normal actor whose actions in [-1, 1] are stored in the replay buffer and rescaled to the bounds for the env
    (as SB3 does), with optional Gaussian exploration noise (the paper's continuous-control setting).

    :param policy: the policy model to use (CnnPolicy, MlpPolicy, ...)
    :param env: the environment to learn from (if registered in Gym, can be str)
    :param learning_rate: learning rate of the world model, a constant or a schedule of the remaining progress
    :param actor_learning_rate: learning rate of the actor, a constant or a schedule
    :param critic_learning_rate: learning rate of the critic, a constant or a schedule
    :param buffer_size: replay capacity in observations (rows), split evenly between envs
    :param learning_starts: env steps of uniformly random actions (``action_space.sample()``) before learning starts
    :param batch_size: number of sequences per gradient step
    :param sequence_length: length of each replayed sequence
    :param train_freq: update the model every ``train_freq`` env steps (per env)
    :param gradient_steps: gradient steps (each on world model, actor and critic) after each rollout
    :param gamma: discount factor of imagined returns
    :param return_lambda: lambda of the imagined TD(lambda) returns
    :param imagination_horizon: length of imagined trajectories
    :param kl_scale: weight of the KL term in the world-model loss
    :param kl_balance: fraction of the KL gradient that trains the prior (the rest regularises the posterior)
    :param free_nats: DreamerV2's free nats: the batch mean of each KL term (prior and posterior) is clipped below at
        this value, so that the whole term has no gradient while the mean KL is below it (0 disables)
    :param free_bits: DreamerV3's free bits: each KL term is clipped below at this value per sample (the KL summed over
        the latent variables of one state) before the batch mean, so that only the states whose KL is below it have no
        gradient; 0 disables it (DreamerV2), DreamerV3 uses 1.0. Applied before ``free_nats`` when both are set
    :param reward_transform: what the reward head learns to predict, and so what the imagined returns add up:
        ``"identity"`` (the reward, the reference's), ``"tanh"`` (``tanh(reward)``, the official DreamerV2's Atari
        setting) or ``"sign"``; the logged episode returns stay the env's
    :param reward_scale: weight of the reward prediction loss
    :param discount_scale: weight of the discount (continuation) prediction loss
    :param round_discount: imagined discounts are gamma times the predicted continuation probability rounded to 0 or
        1 (True, the reference's MinAtar implementation) or the probability itself (False, the official DreamerV2): an
        imagined trajectory is then discounted by the model's doubt about the episode going on, where a rounded one
        runs on undiscounted until the model is sure that it ends
    :param actor_grad: ``"reinforce"``, ``"dynamics"`` (backpropagation through the model) or ``"both"``; None picks
        the paper's choice for the action space: ``"reinforce"`` for ``Discrete`` actions, ``"dynamics"`` for ``Box`` ones
    :param actor_grad_mix: with ``actor_grad="both"``, the weight of the dynamics objective: the actor maximises
        ``actor_grad_mix * dynamics + (1 - actor_grad_mix) * reinforce``, as the official DreamerV2's option of the
        same name (0.1: 10% backpropagation through the model, 90% REINFORCE)
    :param actor_entropy_scale: weight of the actor's entropy bonus, a constant or a schedule of the remaining progress
        (e.g. a decay: a high weight protects the young actor from the inflated returns of a young world model)
    :param normalize_returns: DreamerV3's return normalisation: the actor's advantages (``reinforce``) or returns
        (``dynamics``) are divided by ``max(1, S)``, ``S`` an exponential moving average (decay 0.99) of the range
        between the 5th and 95th percentiles of each batch's lambda-returns (:class:`ReturnScale`, saved with the
        model). False: DreamerV2, True: DreamerV3
    :param mixed_precision: run the forward passes of the gradient steps under bfloat16 autocast: matmuls and
        convolutions in bfloat16, while the GRU state, the distributions, losses, gradients and optimizer states stay
        float32 (DreamerV2 trains in mixed precision on GPUs too). Faster where the hardware multiplies bfloat16
        natively (CUDA GPUs from Ampere on, CPUs with AVX512-BF16 or AMX), slower elsewhere; acting stays float32.
        ``"auto"``: bfloat16 where it is faster (:func:`~sb3_dreamer.common.precision.prefers_bfloat16`: GPUs from
        Ampere on, CPUs whose bfloat16 matmul measures faster than float32), decided again when a saved model is
        loaded; True or False forces it on or off. ``train/mixed_precision`` logs the decision (1 or 0)
    :param compile_losses: compile the world model's loss and the actor's and critic's, forward and backward passes,
        with ``torch.compile`` (inductor) at the first update: faster updates after a first one that compiles for
        minutes (``docs/performance.md``). The losses equal the eager ones within float32 rounding, not bit for bit
    :param target_update_interval: update the target critic every this many env steps or gradient steps (see
        ``target_update_unit``)
    :param target_update_unit: what ``target_update_interval`` counts: ``"env_steps"`` (the reference's, as SB3's DQN)
        or ``"gradient_steps"`` (the official DreamerV2's ``slow_target_update``: after the first gradient step, then
        after every ``target_update_interval``-th)
    :param tau: target critic update coefficient (1 = hard copy)
    :param max_grad_norm: global gradient norm clip of each optimizer
    :param weight_decay: the official DreamerV2's weight decay: every parameter is multiplied by
        ``1 - weight_decay`` before each step of its optimizer (decoupled from the gradient, not scaled by the learning
        rate); 0 (the reference's) disables it, the official value is 1e-6
    :param exploration_initial_eps: initial probability of a random action while training (``Discrete`` actions)
    :param exploration_final_eps: final probability of a random action while training (``Discrete`` actions)
    :param exploration_decay_steps: env steps over which that probability decays linearly, counted from the end of
        the ``learning_starts`` random steps
    :param exploration_noise: standard deviation of the Gaussian noise added to the actor's actions in [-1, 1] while
        training, then clipped to [-1, 1] (``Box`` actions); 0 as in DreamerV2, where the actor's own samples explore
    :param diagnostics_interval: every this many gradient steps, log world-model diagnostics under ``diagnostics/``:
        open-loop predictions of replayed sequences (a "dream" video for image observations), their error and
        their reward error; 0 disables them
    :param recovery_dir: where to save a recovery checkpoint (see :meth:`save_checkpoint`, without the env state)
        when a NaN or infinity stops training: in the data from the env, or in a loss or gradient norm, in which case
        it holds the weights and optimizer states of before the ``train()`` call that produced it; the default
        ``"dreamerv2_recovery"`` gets a subfolder per checkpoint, ``<date-time>_<pid>``, so that runs do not share it
        (under the RL Zoo, the default is the run's log folder); None saves none
    :param replay_buffer_class: replay buffer class (a :class:`SequenceReplayBuffer` subclass)
    :param replay_buffer_kwargs: keyword arguments of the replay buffer
    :param stats_window_size: window size of the rollout logging (episodes)
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments of the policy on creation
    :param verbose: 0 no output, 1 info messages (such as device or wrappers used), 2 debug messages
    :param seed: seed of the pseudo random generators
    :param device: device (cpu, cuda, ...) on which the code should be run ("auto" picks the GPU if any)
    :param _init_setup_model: whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "CnnPolicy": CnnPolicy,
        "MlpPolicy": MlpPolicy,
    }
    policy: DreamerV2Policy
    optimizer_names: ClassVar[tuple[str, ...]] = (
        "policy.world_model_optimizer",
        "policy.actor_optimizer",
        "policy.critic_optimizer",
    )

    def __init__(
        self,
        policy: str | type[DreamerV2Policy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 2e-4,
        actor_learning_rate: float | Schedule = 4e-5,
        critic_learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 4000,
        batch_size: int = 50,
        sequence_length: int = 50,
        train_freq: int | tuple[int, str] = 50,
        gradient_steps: int = 5,
        gamma: float = 0.99,
        return_lambda: float = 0.95,
        imagination_horizon: int = 10,
        kl_scale: float = 0.1,
        kl_balance: float = 0.8,
        free_nats: float = 0.0,
        free_bits: float = 0.0,
        reward_transform: str = "identity",
        reward_scale: float = 1.0,
        discount_scale: float = 5.0,
        round_discount: bool = True,
        actor_grad: str | None = None,
        actor_grad_mix: float = 0.1,
        actor_entropy_scale: float | Schedule = 1e-3,
        normalize_returns: bool = False,
        mixed_precision: str | bool = "auto",
        compile_losses: bool = False,
        target_update_interval: int = 100,
        target_update_unit: str = "env_steps",
        tau: float = 1.0,
        max_grad_norm: float = 100.0,
        weight_decay: float = 0.0,
        exploration_initial_eps: float = 0.4,
        exploration_final_eps: float = 0.05,
        exploration_decay_steps: int = 2450,
        exploration_noise: float = 0.0,
        diagnostics_interval: int = 2000,
        recovery_dir: str | None = DEFAULT_RECOVERY_DIR,
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
            tau=tau,
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
        self.kl_scale = kl_scale
        self.kl_balance = kl_balance
        self.free_nats = free_nats
        self.free_bits = free_bits
        self.reward_transform = reward_transform
        self.reward_scale = reward_scale
        self.discount_scale = discount_scale
        self.round_discount = round_discount
        self.actor_grad = actor_grad
        self.actor_grad_mix = actor_grad_mix
        self.normalize_returns = normalize_returns
        self.target_update_interval = target_update_interval
        self.target_update_unit = target_update_unit
        self.max_grad_norm = max_grad_norm
        self.weight_decay = weight_decay
        self.exploration_initial_eps = exploration_initial_eps
        self.exploration_final_eps = exploration_final_eps
        self.exploration_decay_steps = exploration_decay_steps
        self.exploration_noise = exploration_noise
        self.exploration_rate = exploration_initial_eps
        # Env steps since the model was built, for the target critic update schedule (as DQN's).
        self._n_calls = 0

        if _init_setup_model:
            self._setup_model()

    def _check_hyperparameters(self) -> None:
        if self.actor_grad not in ACTOR_GRADIENTS:
            raise ValueError(f"Unknown actor_grad={self.actor_grad!r}: use one of {ACTOR_GRADIENTS}")
        if self.target_update_unit not in TARGET_UPDATE_UNITS:
            raise ValueError(f"Unknown target_update_unit={self.target_update_unit!r}: use one of {TARGET_UPDATE_UNITS}")
        if self.reward_transform not in tuple(REWARD_TRANSFORMS):
            raise ValueError(f"Unknown reward_transform={self.reward_transform!r}: use one of {tuple(REWARD_TRANSFORMS)}")
        self._check_training_settings()
        check_positive_integers(
            imagination_horizon=self.imagination_horizon, target_update_interval=self.target_update_interval
        )
        check_non_negative_integers(
            exploration_decay_steps=self.exploration_decay_steps, diagnostics_interval=self.diagnostics_interval
        )
        check_booleans(
            normalize_returns=self.normalize_returns, round_discount=self.round_discount, compile_losses=self.compile_losses
        )
        check_probabilities(
            gamma=self.gamma,
            return_lambda=self.return_lambda,
            kl_balance=self.kl_balance,
            actor_grad_mix=self.actor_grad_mix,
            tau=self.tau,
            exploration_initial_eps=self.exploration_initial_eps,
            exploration_final_eps=self.exploration_final_eps,
        )
        check_non_negative(
            kl_scale=self.kl_scale,
            free_nats=self.free_nats,
            free_bits=self.free_bits,
            reward_scale=self.reward_scale,
            discount_scale=self.discount_scale,
            exploration_noise=self.exploration_noise,
        )
        check_probabilities(weight_decay=self.weight_decay)
        check_positive(max_grad_norm=self.max_grad_norm)
        check_non_negative_schedules(
            learning_rate=self.learning_rate,
            actor_learning_rate=self.actor_learning_rate,
            critic_learning_rate=self.critic_learning_rate,
            actor_entropy_scale=self.actor_entropy_scale,
        )

    def _setup_model(self) -> None:
        if self.actor_grad is None:
            self.actor_grad = "dynamics" if isinstance(self.action_space, spaces.Box) else "reinforce"
        if "image_likelihood" in vars(self):
            # A model saved before image_likelihood became a policy option (policy_kwargs) holds it as an attribute
            self.policy_kwargs = {**self.policy_kwargs, "image_likelihood": vars(self).pop("image_likelihood")}
        super()._setup_model()
        self.world_model_loss_config = WorldModelLossConfig(
            self.kl_scale, self.kl_balance, self.free_nats, self.free_bits, self.reward_scale, self.discount_scale
        )
        self.actor_lr_schedule = FloatSchedule(self.actor_learning_rate)
        self.critic_lr_schedule = FloatSchedule(self.critic_learning_rate)
        #: the world model's loss and :meth:`_actor_critic_losses`, compiled with ``compile_losses``
        self._world_model_loss_function = self._compiled(self.policy.world_model.loss)
        self._actor_critic_loss_function = self._compiled(self._actor_critic_losses)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_world_model_loss_function", "_actor_critic_loss_function"]

    def learn(
        self: SelfDreamerV2,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = LOG_INTERVAL,
        tb_log_name: str = "DreamerV2",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDreamerV2:
        """
        Collect ``total_timesteps`` env steps, training every ``train_freq`` steps, as DQN's ``learn``.

        :param total_timesteps: env steps to collect (over all envs)
        :param callback: called at every step, with ``self.locals`` as for DQN
        :param log_interval: episodes between two dumps of the logger (the console table, TensorBoard's ``rollout/``
            and ``train/`` points): 50 by default (SB3's off-policy algorithms use 4), as MinAtar's short episodes
            (tens of steps at first) would otherwise print a table every few dozen steps; the RL Zoo passes its
            ``--log-interval`` only when given one
        :param tb_log_name: name of the TensorBoard run
        :param reset_num_timesteps: start the timestep count (and the TensorBoard run) anew, or continue them
        :param progress_bar: show SB3's progress bar
        :return: the trained model
        """
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _on_step(self) -> None:
        """After each env step: decay epsilon, update the target critic every ``target_update_interval`` steps."""
        self._n_calls += 1
        self.exploration_rate = self.exploration_schedule(self.num_timesteps)
        if self.target_update_unit == "env_steps" and self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            self._update_target_critic()
        if isinstance(self.action_space, spaces.Discrete):
            self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def _update_target_critic(self) -> None:
        polyak_update(self.policy.critic.parameters(), self.policy.critic_target.parameters(), self.tau)

    def exploration_schedule(self, num_timesteps: int) -> float:
        """
        Epsilon of the actor's next action after ``num_timesteps`` env steps: ``exploration_initial_eps`` at its first
        step after the ``learning_starts`` random steps, then linear to ``exploration_final_eps`` over
        ``exploration_decay_steps`` env steps (the reference's ``max(0.05, 0.4 - k / 7000)``, k the actor's steps).
        """
        actor_steps = max(num_timesteps - self.learning_starts, 0)
        progress = min(actor_steps / max(self.exploration_decay_steps, 1), 1.0)
        return self.exploration_initial_eps + progress * (self.exploration_final_eps - self.exploration_initial_eps)

    def _update_schedules(self) -> None:
        """Set the learning rates of this training phase from their schedules; log them and the entropy scale."""
        schedules = (
            (self.policy.world_model_optimizer, self.lr_schedule, "world_model"),
            (self.policy.actor_optimizer, self.actor_lr_schedule, "actor"),
            (self.policy.critic_optimizer, self.critic_lr_schedule, "critic"),
        )
        for optimizer, schedule, name in schedules:
            learning_rate = schedule(self._current_progress_remaining)
            update_learning_rate(optimizer, learning_rate)
            self.logger.record(f"train/{name}_learning_rate", learning_rate)
        self.logger.record("train/actor_entropy_scale", self.actor_entropy_schedule(self._current_progress_remaining))

    def _gradient_step(self, samples: SequenceSamples, step: int) -> tuple[dict[str, th.Tensor], LatentState]:
        """A gradient step of the world model, then of actor and critic, then the target critic's update if due."""
        world_model_metrics, posterior = self._train_world_model(samples)
        metrics = {**world_model_metrics, **self._train_actor_critic(posterior, samples.terminated)}
        if self.target_update_unit == "gradient_steps" and (self._n_updates + step) % self.target_update_interval == 0:
            self._update_target_critic()
        return metrics, posterior

    def _sample(self, batch_size: int) -> SequenceSamples:
        """A batch of replayed windows, with the rewards that the world model learns (see ``reward_transform``)."""
        samples = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
        transform = REWARD_TRANSFORMS[self.reward_transform]
        return samples if transform is None else samples._replace(rewards=transform(samples.rewards))

    def _train_world_model(self, samples: SequenceSamples) -> tuple[dict[str, th.Tensor], LatentState]:
        """One gradient step of the world model on a batch of sequences; returns metrics and posterior states (N, ...)."""
        with self._autocast():
            loss, metrics, posterior = self._world_model_loss_function(samples, self.world_model_loss_config)
        (metrics["world_model_grad_norm"],) = self._optimizer_step(loss, self.policy.world_model_optimizer)
        return metrics, detached(posterior)

    def _optimizer_step(self, loss: th.Tensor, *optimizers: th.optim.Optimizer) -> list[th.Tensor]:
        """
        A step of each optimizer on the gradients of ``loss`` for its parameters only, from one backward pass, each
        optimizer's gradients clipped to ``max_grad_norm`` apart; returns their norms. With several optimizers, ``loss``
        is the sum of their losses, none of which reaches another optimizer's parameters (a compiled function's outputs
        share one backward pass).
        """
        parameter_lists = [[p for group in optimizer.param_groups for p in group["params"]] for optimizer in optimizers]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=[parameter for parameters in parameter_lists for parameter in parameters])
        grad_norms = []
        for optimizer, parameters in zip(optimizers, parameter_lists, strict=True):
            grad_norms.append(th.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm))
            if self.weight_decay > 0:
                with th.no_grad():
                    th._foreach_mul_(parameters, 1.0 - self.weight_decay)
            optimizer.step()
        return grad_norms

    def imagined_discounts(self, continue_logits: th.Tensor) -> th.Tensor:
        """Discount of each imagined step from the continuation logits (see ``round_discount``), same shape."""
        if self.round_discount:
            return self.gamma * (continue_logits > 0).float()  # logit > 0 <=> probability > 0.5
        return self.gamma * th.sigmoid(continue_logits)

    def _train_actor_critic(self, start: LatentState, start_terminated: th.Tensor) -> dict[str, th.Tensor]:
        """
        One gradient step of actor and critic on trajectories imagined from every posterior state.

        :param start: posterior states, (N, ...) with N = T * B
        :param start_terminated: 1.0 where the start state is terminal, (T, B)
        """
        policy = self.policy
        with self._autocast():
            actor_loss, critic_loss, metrics = self._actor_critic_loss_function(
                start, start_terminated, self._current_entropy_scale()
            )
        # The actor's loss does not reach the critic, nor the critic's the actor: one backward pass serves both
        grad_norms = self._optimizer_step(actor_loss + critic_loss, policy.actor_optimizer, policy.critic_optimizer)
        metrics["actor_grad_norm"], metrics["critic_grad_norm"] = grad_norms
        return metrics

    def _actor_critic_losses(
        self, start: LatentState, start_terminated: th.Tensor, entropy_scale: th.Tensor | float
    ) -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:
        """
        Actor and critic losses on trajectories imagined from ``start`` (see :meth:`_train_actor_critic`), metrics.

        :param entropy_scale: weight of the actor's entropy bonus, () or a float
        """
        dynamics_gradients = self.actor_grad != "reinforce"
        trajectory = self.policy.imagine(start, self.imagination_horizon, dynamics_gradients)
        rewards, target_values = trajectory.rewards, trajectory.target_values  # (H, N), (H + 1, N)
        discounts = self.imagined_discounts(trajectory.continue_logits)  # (H, N)
        returns = lambda_return(rewards, target_values[1:], discounts, self.return_lambda)  # (H, N)
        with th.no_grad():
            # Weight of each imagined step: the probability that the trajectory is still running, times gamma^t.
            start_continue = 1.0 - start_terminated.flatten()
            weights = th.cumprod(th.cat([start_continue.unsqueeze(0), discounts[:-1]]), dim=0)  # (H, N)

        action_dist, action_params = self.policy.action_dist, trajectory.action_params  # (H, N, param_dim)
        entropy = action_dist.entropy(action_params, trajectory.actions)  # (H, N)
        if self.actor_grad == "dynamics":
            objective = returns
        else:
            action_log_probs = action_dist.log_prob(action_params, trajectory.actions.detach())  # (H, N)
            objective = action_log_probs * (returns - target_values[:-1]).detach()
            if self.actor_grad == "both":
                objective = self.actor_grad_mix * returns + (1.0 - self.actor_grad_mix) * objective
        metrics: dict[str, th.Tensor] = {
            "actor_entropy": entropy.detach().mean(),
            "imagined_reward_mean": rewards.detach().mean(),
            "lambda_return_mean": returns.detach().mean(),
            "lambda_return_std": returns.detach().std(),
        }
        if self.normalize_returns:
            # Both gradients are linear in the returns: dividing the objective divides the advantages and the returns
            scale = self.return_scale.update(returns.detach())  # ()
            objective = objective / scale
            metrics["return_scale"] = scale
        actor_loss = -(weights * (objective + entropy_scale * entropy)).mean()
        value_dist, value_outputs = self.policy.value_dist, trajectory.value_outputs  # (H, N, value_dim)
        critic_loss = (weights * value_dist.loss(value_outputs, returns.detach())).mean()
        metrics["actor_loss"] = actor_loss.detach()
        metrics["critic_loss"] = critic_loss.detach()
        metrics["value_mean"] = value_dist.predict(value_outputs.detach()).mean()
        return actor_loss, critic_loss, metrics
