"""The world model: encoder, RSSM, decoder, reward and discount heads, and its loss on replayed sequences."""

from typing import TYPE_CHECKING, NamedTuple

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from torch import nn

from sb3_dreamer.world_model.distributions import ActionDistribution, ScalarDistribution, balanced_kl_loss
from sb3_dreamer.world_model.rssm import LatentState, ModelState, SequenceModel
from sb3_dreamer.world_model.symlog import symlog

if TYPE_CHECKING:
    from sb3_dreamer.common.buffers import SequenceSamples

#: How the decoder's outputs predict an observation, and the loss per entry: a unit-variance Gaussian (the outputs are
#: its means; half the squared error), a Bernoulli for binary frames (the outputs are its logits; the cross-entropy),
#: DreamerV3's squared error of the outputs (vectors) or of their sigmoid (images in [0, 1])
IMAGE_LIKELIHOODS = ("normal", "bernoulli", "mse", "sigmoid_mse")


class ActingState(NamedTuple):
    """What an agent carries between env steps: the model state and the action it took, all (n_envs, ...)."""

    deter: th.Tensor
    stoch: th.Tensor
    #: the last action taken as the world model reads it (a one-hot, or the action in [-1, 1] for Box action spaces),
    #: (n_envs, action_dim)
    action: th.Tensor

    @property
    def latent(self) -> LatentState:
        return LatentState(self.deter, self.stoch)


class WorldModelLossConfig(NamedTuple):
    """The algorithm's weights and clips of the world-model loss (see :meth:`WorldModel.loss`)."""

    #: weight of the KL term
    kl_scale: float
    #: fraction of the KL gradient that trains the prior (the rest regularises the posterior)
    kl_balance: float
    #: DreamerV2's free nats: the batch mean of each KL term is clipped below at this value (0 disables)
    free_nats: float
    #: DreamerV3's free bits: each KL term is clipped below at this value per state before the mean (0 disables)
    free_bits: float
    #: weight of the reward prediction loss
    reward_scale: float
    #: weight of the discount (continuation) prediction loss
    discount_scale: float
    #: the continuation target is ``continue_discount * (1 - terminated)``: DreamerV3's continue head learns the
    #: discount with it (1 - 1/333), DreamerV2's the continuation alone (1)
    continue_discount: float = 1.0


class WorldModel(nn.Module):
    """
    Encoder, RSSM, decoder, reward and discount heads, learned from replayed sequences by :meth:`loss`.

    :param observation_space: the observations it reads and reconstructs
    :param action_dist: how the actions of the action space become the action vectors the RSSM reads
    :param encoder: float observations (N, *obs_shape) -> embeddings (N, embedding_dim)
    :param decoder: features (N, feature_dim) -> observation means or logits (N, *obs_shape)
    :param rssm: the recurrent state-space model
    :param reward_dist: how the reward head's outputs predict the reward
    :param reward_head: model states (N, ...) -> the reward head's outputs (N, reward_dist.param_dim)
    :param discount_head: model states (N, ...) -> the continuation logits (N, 1)
    :param normalize_images: divide uint8 images in [0, 255] by 255
    :param symlog_observations: read and reconstruct ``symlog(obs)`` (DreamerV3's vector inputs)
    :param image_likelihood: how the decoder's outputs predict the observations, one of :data:`IMAGE_LIKELIHOODS`
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        action_dist: ActionDistribution,
        encoder: nn.Module,
        decoder: nn.Module,
        rssm: SequenceModel,
        reward_dist: ScalarDistribution,
        reward_head: nn.Module,
        discount_head: nn.Module,
        normalize_images: bool = True,
        symlog_observations: bool = False,
        image_likelihood: str = "normal",
    ) -> None:
        super().__init__()
        if image_likelihood not in IMAGE_LIKELIHOODS:
            raise ValueError(f"Unknown image_likelihood={image_likelihood!r}: use one of {IMAGE_LIKELIHOODS}")
        self.observation_space = observation_space
        self.action_dist = action_dist
        self.normalize_images = normalize_images
        # Whether the observations are images in [0, 255], decided once (SB3's test reads the space's bounds with NumPy)
        self._is_image_space = is_image_space(observation_space)
        self.symlog_observations = symlog_observations
        self.image_likelihood = image_likelihood
        self.encoder = encoder
        self.decoder = decoder
        self.rssm = rssm
        self.reward_dist = reward_dist
        self.reward_head = reward_head
        self.discount_head = discount_head

    def preprocess(self, observations: th.Tensor) -> th.Tensor:
        """
        Raw observations (..., *obs_shape) -> float network inputs (..., *obs_shape), which are also the decoder's
        targets: uint8 images scaled to [0, 1], and ``symlog(obs)`` with ``symlog_observations``.
        """
        # SB3's preprocess_obs for a Box space
        inputs = observations.float()
        if self.normalize_images and self._is_image_space:
            inputs = inputs / 255.0
        return symlog(inputs) if self.symlog_observations else inputs

    def embed(self, observations: th.Tensor) -> th.Tensor:
        """Float observations (*batch, *obs_shape) -> embeddings (*batch, embedding_dim)."""
        obs_shape = self.observation_space.shape
        batch_shape = observations.shape[: observations.dim() - len(obs_shape)]
        return self.encoder(observations.reshape(-1, *obs_shape)).view(*batch_shape, -1)

    def reward(self, state: ModelState) -> th.Tensor:
        """Predicted reward for arriving at states (N, ...) -> (N,)."""
        return self.reward_dist.predict(self.reward_head(state))

    def decode(self, state: LatentState) -> th.Tensor:
        """
        The observations that states (N, ...) predict, as :meth:`preprocess` returns them, (N, *obs_shape): the
        Bernoulli probabilities, or the Gaussian means clamped to the observation space's bounds.
        """
        predictions = self.decoder(state.features())
        if self.image_likelihood in ("bernoulli", "sigmoid_mse"):
            return predictions.sigmoid()
        low, high = (
            self.preprocess(th.as_tensor(bound, device=predictions.device))
            for bound in (self.observation_space.low, self.observation_space.high)
        )
        return predictions.clamp(low, high)

    def loss(
        self, samples: "SequenceSamples", config: WorldModelLossConfig
    ) -> tuple[th.Tensor, dict[str, th.Tensor], LatentState]:
        """
        The world-model loss of a batch of replayed windows: reconstruction, reward and discount prediction from the
        posterior states, and the balanced KL between posterior and prior.

        :param samples: windows (T, B, ...), which start from the initial state or from their ``start`` (replay
            context)
        :param config: the weights and clips of the loss terms
        :return: the loss, detached metrics, and the posterior states flattened to (N, ...) with N = T * B, with their
            gradients to the world model
        """
        rssm = self.rssm
        observations = self.preprocess(samples.observations)  # (T, B, *obs_shape)
        actions = self.action_dist.to_vector(samples.actions)  # (T, B, action_dim)
        embeds = self.embed(observations)  # (T, B, E)
        # Replay context: the stored states of the rows before the windows
        initial = rssm.initial_state(samples.rewards.shape[1], embeds.device) if samples.start is None else samples.start
        sequence = rssm.observe(embeds, actions, samples.is_first, initial)
        posterior = LatentState(sequence.posterior.deter.flatten(0, 1), sequence.posterior.stoch.flatten(0, 1))  # (T * B, ...)

        reconstruction = self.decoder(posterior.features())  # (T * B, *obs_shape)
        targets = observations.flatten(0, 1)
        if self.image_likelihood == "normal":
            pixel_losses = 0.5 * (reconstruction - targets).pow(2)
        elif self.image_likelihood == "bernoulli":
            pixel_losses = F.binary_cross_entropy_with_logits(reconstruction, targets, reduction="none")
        elif self.image_likelihood == "mse":
            pixel_losses = (reconstruction - targets).pow(2)
        else:
            pixel_losses = (reconstruction.sigmoid() - targets).pow(2)
        reconstruction_loss = pixel_losses.flatten(1).sum(-1).mean()
        reward_loss = self.reward_dist.loss(self.reward_head(posterior), samples.rewards.flatten()).mean()
        continue_targets = 1.0 - samples.terminated.flatten()
        if config.continue_discount != 1.0:
            continue_targets = config.continue_discount * continue_targets
        discount_loss = F.binary_cross_entropy_with_logits(self.discount_head(posterior).squeeze(-1), continue_targets)
        kl_loss, kl = balanced_kl_loss(
            rssm.latent, sequence.posterior_stats, sequence.prior_stats, config.kl_balance, config.free_nats, config.free_bits
        )
        loss = (
            reconstruction_loss
            + config.reward_scale * reward_loss
            + config.discount_scale * discount_loss
            + config.kl_scale * kl_loss
        )
        with th.no_grad():
            metrics = {
                "world_model_loss": loss.detach(),
                "reconstruction_loss": reconstruction_loss.detach(),
                "reward_loss": reward_loss.detach(),
                "discount_loss": discount_loss.detach(),
                "kl": kl,
                "prior_entropy": rssm.latent.entropy(sequence.prior_stats).mean(),
                "posterior_entropy": rssm.latent.entropy(sequence.posterior_stats).mean(),
            }
        return loss, metrics, posterior
