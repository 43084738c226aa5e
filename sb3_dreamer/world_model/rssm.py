"""Recurrent state-space model (RSSM): deterministic GRU state plus a stochastic latent."""

from abc import ABC, abstractmethod
from typing import NamedTuple, TypeVar

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_dreamer.world_model.distributions import CategoricalLatent, GaussianLatent, LatentDistribution
from sb3_dreamer.world_model.layers import PartLinear


class LatentState(NamedTuple):
    """Model state of N trajectories: ``deter`` (N, deter_size) and ``stoch`` (N, stoch_dim)."""

    deter: th.Tensor
    stoch: th.Tensor

    def features(self) -> th.Tensor:
        """cat(deter, stoch), (N, deter_size + stoch_dim)."""
        return th.cat([self.deter, self.stoch], dim=-1)

    def masked(self, keep: th.Tensor) -> "LatentState":
        """The state times ``keep`` (N, 1): 0.0 resets a trajectory to the all-zero initial state, 1.0 keeps it."""
        return LatentState(self.deter * keep, self.stoch * keep)


class IndexLatentState(NamedTuple):
    """
    Model state of N trajectories that needs no gradients through its categorical latents: ``deter`` (N, deter_size)
    and ``stoch_index`` (N, stoch), the positions of the ones of the flat one-hot ``stoch``. A linear layer reads it by
    gathering weight columns (see :func:`stoch_linear`), a twentieth of the matmul's work for 20 x 20 latents.
    """

    deter: th.Tensor
    stoch_index: th.Tensor


#: a state as the heads and the recurrent step read it: dense, or with its categorical latents as indices
ModelState = LatentState | IndexLatentState
#: the same kind of state in and out
State = TypeVar("State", bound=ModelState)


def detached(state: State) -> State:
    """The state as a constant: its tensors detached from the graph."""
    return type(state)(*(x.detach() for x in state))


def stack_states(states: list[State]) -> State:
    """States s_0 .. s_H, each (N, ...), as one state ((H + 1) * N, ...), step-major."""
    return type(states[0])(*(th.cat(parts) for parts in zip(*states, strict=True)))


def slice_states(state: State, stop: int) -> State:
    """The first ``stop`` rows of a state."""
    return type(state)(*(x[:stop] for x in state))


def continue_mask(is_first: th.Tensor) -> th.Tensor:
    """1.0 where a trajectory goes on, 0.0 where an episode starts: ``is_first`` (...) -> (..., 1)."""
    return (1.0 - is_first).unsqueeze(-1)


def reset_episodes(state: LatentState, action: th.Tensor, is_first: th.Tensor) -> tuple[LatentState, th.Tensor]:
    """
    The previous state (N, ...) and action (N, action_dim), reset to zeros where ``is_first`` (N,) is 1.0: an episode
    starts there from the initial state, without a previous action.
    """
    keep = continue_mask(is_first)  # (N, 1)
    return state.masked(keep), action * keep


def stoch_linear(layer: nn.Linear, state: ModelState) -> th.Tensor:
    """``layer(state.stoch)`` (N, out), read from ``state.stoch_index`` (N, stoch) when the state holds indices."""
    if isinstance(state, LatentState):
        return layer(state.stoch)
    output = OneHotLinear.apply(state.stoch_index, layer.weight)
    return output if layer.bias is None else output + layer.bias


class OneHotLinear(th.autograd.Function):
    """
    ``one_hot @ weight.T`` (N, out) of the flat one-hot whose ones are at ``index`` (N, k), with a gradient for
    ``weight`` (out, in) only: the forward pass gathers k weight columns per row (``embedding_bag``), the backward
    pass multiplies by the one-hot (faster on the CPU than the gather's own backward).
    """

    @staticmethod
    def forward(ctx, index: th.Tensor, weight: th.Tensor) -> th.Tensor:
        ctx.save_for_backward(index)
        ctx.in_features = weight.shape[1]
        return F.embedding_bag(index, weight.t().contiguous(), mode="sum")

    @staticmethod
    def backward(ctx, grad_output: th.Tensor) -> tuple[None, th.Tensor]:
        (index,) = ctx.saved_tensors
        one_hot = grad_output.new_zeros(index.shape[0], ctx.in_features).scatter_(-1, index, 1.0)  # (N, in)
        return None, grad_output.t() @ one_hot


class GRUCell(nn.GRUCell):
    """
    ``nn.GRUCell`` whose gates and new state are computed in the state's dtype (float32) under autocast too, where its
    two matmuls may run in bfloat16: CUDA's autocast would otherwise run the whole ``gru_cell`` in bfloat16, state
    included. Without autocast it computes what ``nn.GRUCell`` computes, bit for bit (the same operations as
    PyTorch's CPU ``gru_cell``).
    """

    def forward(self, inputs: th.Tensor, state: th.Tensor) -> th.Tensor:  # type: ignore[override]
        """(N, input_size), (N, hidden_size) -> the new state (N, hidden_size), in the state's dtype."""
        input_gates = F.linear(inputs, self.weight_ih, self.bias_ih).to(state.dtype).unsafe_chunk(3, 1)
        state_gates = F.linear(state, self.weight_hh, self.bias_hh).to(state.dtype).unsafe_chunk(3, 1)
        reset = state_gates[0].add_(input_gates[0]).sigmoid_()
        update = state_gates[1].add_(input_gates[1]).sigmoid_()
        candidate = input_gates[2].add(state_gates[2].mul_(reset)).tanh_()
        return (state - candidate).mul_(update).add_(candidate)


class LayerNormGRUCell(nn.Module):
    """
    The GRU cell of the official DreamerV2: one linear map of ``cat(input, state)`` to the three gates' inputs, layer
    normalisation over all of them, the reset gate applied to the whole candidate input, and an update gate biased
    towards keeping the state (bias -1):

    ``r, c, u = split(LayerNorm(W [x, h]))``; ``c = tanh(sigmoid(r) * c)``; ``u = sigmoid(u - 1)``;
    ``h' = u * c + (1 - u) * h``.

    :param input_size: size of the input x
    :param hidden_size: size of the state h
    :param update_bias: added to the update gate's input before the sigmoid
    :param eps: epsilon of the layer normalisation (Keras' default, as in the official code)
    """

    def __init__(self, input_size: int, hidden_size: int, update_bias: float = -1.0, eps: float = 1e-3) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.update_bias = update_bias
        # No bias: the layer norm's own shift takes its place
        self.linear = nn.Linear(input_size + hidden_size, 3 * hidden_size, bias=False)
        self.norm = nn.LayerNorm(3 * hidden_size, eps=eps)

    def forward(self, inputs: th.Tensor, state: th.Tensor) -> th.Tensor:
        """(N, input_size), (N, hidden_size) -> the new state (N, hidden_size), in the state's dtype."""
        parts = self.norm(self.linear(th.cat([inputs, state.to(inputs.dtype)], dim=-1)).float())
        reset, candidate, update = parts.split(self.hidden_size, dim=-1)
        candidate = th.tanh(th.sigmoid(reset) * candidate)
        update = th.sigmoid(update + self.update_bias)
        return (update * candidate + (1.0 - update) * state).to(state.dtype)


class ObservedSequence(NamedTuple):
    """Output of :meth:`RSSM.observe` over a (T, B) window."""

    #: posterior states, deter (T, B, deter_size) and stoch (T, B, stoch_dim)
    posterior: LatentState
    #: posterior stats (T, B, stats_dim)
    posterior_stats: th.Tensor
    #: prior stats (T, B, stats_dim), from the same deterministic states
    prior_stats: th.Tensor


class SequenceModel(nn.Module, ABC):
    """
    What the RSSMs share: a deterministic recurrent state ``deter_t = f(deter_{t-1}, stoch_{t-1}, action_{t-1})``, the
    prior of ``stoch_t`` from ``deter_t``, its posterior from ``deter_t`` and the observation embedding, and the loops
    that unroll them (imagination, acting, replayed windows). A subclass builds ``latent``, ``prior_net``,
    ``post_embed_in`` and the layers its hooks use.

    :param stoch_size: number of stochastic variables (categoricals or Gaussians)
    :param class_size: classes of each categorical (discrete latents only)
    :param deter_size: size of the recurrent state
    :param latent_type: ``"discrete"`` (categoricals, straight-through) or ``"gaussian"`` (DreamerV1)
    :param min_std: lower bound of the Gaussian standard deviation
    :param unimix: weight of the uniform mixed into the prior and posterior categoricals (discrete latents only,
        DreamerV3; see :class:`CategoricalLatent`)
    :param transposed_softmax: the categoricals' softmaxes along a transposed view (see :class:`CategoricalLatent`)
    """

    prior_net: nn.Module
    #: the embedding's part of the posterior's first layer, applied to a whole window at once
    post_embed_in: nn.Module

    def __init__(
        self,
        stoch_size: int,
        class_size: int,
        deter_size: int,
        latent_type: str,
        min_std: float,
        unimix: float,
        transposed_softmax: bool = False,
    ) -> None:
        super().__init__()
        if latent_type == "discrete":
            self.latent: LatentDistribution = CategoricalLatent(stoch_size, class_size, unimix, transposed_softmax)
        elif latent_type == "gaussian":
            self.latent = GaussianLatent(stoch_size, min_std)
        else:
            raise ValueError(f"Unknown latent_type {latent_type!r}: use 'discrete' or 'gaussian'")
        self.deter_size = deter_size
        self.stoch_dim = self.latent.sample_dim
        self.feature_dim = deter_size + self.stoch_dim

    @abstractmethod
    def embed_action(self, action: th.Tensor) -> th.Tensor:
        """The action's input to the recurrent step, (..., action_dim) -> (..., hidden)."""

    @abstractmethod
    def window_action_inputs(self, actions: th.Tensor, keep: th.Tensor) -> th.Tensor:
        """
        The action inputs of a window, (T, B, action_dim) -> (T, B, hidden), as from actions zeroed where ``keep``
        (T, B, 1) is 0.0 (where an episode starts, no previous action).
        """

    @abstractmethod
    def _recurrent(self, state: ModelState, action_in: th.Tensor) -> th.Tensor:
        """The next deterministic state from the previous state (N, ...) and the action input (N, hidden)."""

    @abstractmethod
    def _posterior(self, deter: th.Tensor, embed_in: th.Tensor) -> th.Tensor:
        """Posterior stats (N, stats_dim) from ``deter`` (N, deter_size) and ``post_embed_in(embed)`` (N, hidden)."""

    def initial_state(self, batch_size: int, device: th.device) -> LatentState:
        """All-zero state of ``batch_size`` trajectories (also the state after a reset)."""
        return LatentState(
            th.zeros(batch_size, self.deter_size, device=device), th.zeros(batch_size, self.stoch_dim, device=device)
        )

    def prior(self, deter: th.Tensor) -> th.Tensor:
        """Prior stats of the stochastic state, (..., deter_size) -> (..., stats_dim), float32 under autocast too."""
        return self.latent.stats_from_output(self.prior_net(deter).float())

    @property
    def has_index_samples(self) -> bool:
        """Whether :meth:`imagine_index_step` can sample (categorical latents)."""
        return isinstance(self.latent, CategoricalLatent)

    def imagine_step(self, state: ModelState, action: th.Tensor, deterministic: bool = False) -> LatentState:
        """One step of the prior: (state_{t-1}, action_{t-1} (N, action_dim)) -> state_t."""
        deter = self._recurrent(state, self.embed_action(action))
        return LatentState(deter, self.latent.sample(self.prior(deter), deterministic))

    def imagine_index_step(self, state: ModelState, action: th.Tensor) -> IndexLatentState:
        """:meth:`imagine_step` with the sample as indices, without gradients through it (categorical latents only)."""
        assert isinstance(self.latent, CategoricalLatent)
        deter = self._recurrent(state, self.embed_action(action))
        return IndexLatentState(deter, self.latent.sample_index(self.prior(deter)))

    def observe_step(
        self,
        state: LatentState,
        action: th.Tensor,
        embed: th.Tensor,
        is_first: th.Tensor | None,
        deterministic: bool = False,
    ) -> LatentState:
        """
        One posterior step, used when acting.

        :param state: previous state, (N, ...)
        :param action: previous action, (N, action_dim)
        :param embed: embedding of the new observation, (N, embedding_dim)
        :param is_first: 1.0 where the observation starts an episode (state and action are reset), (N,), or None
            where none does
        :param deterministic: use the mode of the posterior instead of a sample
        """
        if is_first is not None:
            state, action = reset_episodes(state, action, is_first)
        deter = self._recurrent(state, self.embed_action(action))
        stats = self._posterior(deter, self.post_embed_in(embed))
        return LatentState(deter, self.latent.sample(stats, deterministic))

    def observe(self, embeds: th.Tensor, actions: th.Tensor, is_first: th.Tensor, state: LatentState) -> ObservedSequence:
        """
        Posterior states of a window of observations.

        :param embeds: observation embeddings, (T, B, embedding_dim)
        :param actions: the action that led to each observation, (T, B, action_dim)
        :param is_first: 1.0 where an observation starts an episode, (T, B)
        :param state: state before the first step, (B, ...)
        """
        keep = continue_mask(is_first)  # (T, B, 1)
        # Unbound once: the backward pass then stacks the steps' gradients in one operation, where indexing each
        # step would write each into a zero tensor of the whole window
        action_ins = self.window_action_inputs(actions, keep).unbind(0)  # T x (B, hidden)
        embed_ins = self.post_embed_in(embeds).unbind(0)  # T x (B, hidden)
        deters, stochs, post_stats = [], [], []
        for step_keep, action_in, embed_in in zip(keep.unbind(0), action_ins, embed_ins, strict=True):
            state = state.masked(step_keep)
            deter = self._recurrent(state, action_in)
            stats = self._posterior(deter, embed_in)
            stoch = self.latent.sample(stats)
            state = LatentState(deter, stoch)
            deters.append(deter)
            stochs.append(stoch)
            post_stats.append(stats)
        deter_seq = th.stack(deters)  # (T, B, deter_size)
        return ObservedSequence(LatentState(deter_seq, th.stack(stochs)), th.stack(post_stats), self.prior(deter_seq))


class RSSM(SequenceModel):
    """
    The RSSM of DreamerV2 (Hafner et al. 2020, https://arxiv.org/abs/2010.02193).

    ``deter_t = GRU(deter_{t-1}, MLP(stoch_{t-1}, action_{t-1}))``; the prior of ``stoch_t`` is a function of
    ``deter_t``, its posterior of ``deter_t`` and the observation embedding.

    :param action_dim: size of the action vector (a one-hot, or continuous actions in [-1, 1])
    :param embedding_dim: size of the observation embedding
    :param deter_size: size of the GRU state
    :param stoch_size: number of stochastic variables (categoricals or Gaussians)
    :param class_size: classes of each categorical (discrete latents only)
    :param hidden_size: hidden units of the prior, posterior and input MLPs
    :param latent_type: ``"discrete"`` (categoricals, straight-through) or ``"gaussian"`` (DreamerV1)
    :param min_std: lower bound of the Gaussian standard deviation
    :param activation_fn: activation of the hidden layers
    :param unimix: weight of the uniform mixed into the prior and posterior categoricals (discrete latents only,
        DreamerV3; see :class:`CategoricalLatent`)
    :param layer_norm_gru: the official DreamerV2's layer-normalised GRU cell (:class:`LayerNormGRUCell`) instead of
        ``nn.GRUCell`` (:class:`GRUCell`)
    :param part_init: how the parts of the input's and the posterior's first layers draw their initial weights
        (:class:`PartLinear`)
    """

    def __init__(
        self,
        action_dim: int,
        embedding_dim: int,
        deter_size: int = 200,
        stoch_size: int = 20,
        class_size: int = 20,
        hidden_size: int = 200,
        latent_type: str = "discrete",
        min_std: float = 0.1,
        activation_fn: type[nn.Module] = nn.ELU,
        unimix: float = 0.0,
        layer_norm_gru: bool = False,
        part_init: str = "layer",
    ) -> None:
        super().__init__(stoch_size, class_size, deter_size, latent_type, min_std, unimix)
        # The input MLP's first layer is split into its stoch and action parts (the same linear map on the
        # concatenation) so that the action part of a whole sequence is computed in one matmul.
        input_features = self.stoch_dim + action_dim
        self.stoch_in = PartLinear(self.stoch_dim, hidden_size, input_features, part_init=part_init)
        self.action_in = PartLinear(action_dim, hidden_size, input_features, bias=False, part_init=part_init)
        self.activation = activation_fn()
        self.gru = LayerNormGRUCell(hidden_size, deter_size) if layer_norm_gru else GRUCell(hidden_size, deter_size)
        self.prior_net = nn.Sequential(
            nn.Linear(deter_size, hidden_size), activation_fn(), nn.Linear(hidden_size, self.latent.stats_dim)
        )
        # Likewise the posterior's first layer: deter part per step, embedding part for the whole sequence.
        posterior_features = deter_size + embedding_dim
        self.post_deter_in = PartLinear(deter_size, hidden_size, posterior_features, part_init=part_init)
        self.post_embed_in = PartLinear(embedding_dim, hidden_size, posterior_features, bias=False, part_init=part_init)
        self.post_out = nn.Linear(hidden_size, self.latent.stats_dim)

    def embed_action(self, action: th.Tensor) -> th.Tensor:
        return self.action_in(action)

    def window_action_inputs(self, actions: th.Tensor, keep: th.Tensor) -> th.Tensor:
        # A linear map without bias: zeroing its outputs zeroes its inputs
        return self.action_in(actions) * keep

    def _posterior(self, deter: th.Tensor, embed_in: th.Tensor) -> th.Tensor:
        hidden = self.activation(self.post_deter_in(deter) + embed_in)
        return self.latent.stats_from_output(self.post_out(hidden).float())

    def _recurrent(self, state: ModelState, action_in: th.Tensor) -> th.Tensor:
        return self.gru(self.activation(stoch_linear(self.stoch_in, state) + action_in), state.deter)
