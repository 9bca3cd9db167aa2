r"""The three-factor rule bound to a projection, stepped by hand, and what the local rules share.

The rule (:mod:`neurosim.projections.eligibility` holds the model: parameters, traces, step
function): a Hebbian eligibility trace :math:`e_{ij}` turned into a weight change
:math:`\Delta W_{ij}[t] = M[t]\, e_{ij}[t]` by a modulator :math:`M` (batch mean). The learning
rate is the optimiser's: :class:`ThreeFactor` deposits :math:`-\Delta W` into ``weight.grad``, so
``torch.optim.SGD(lr=eta).step()`` applies :math:`W \leftarrow W + \eta \Delta W`. Inside
:meth:`Network.run <neurosim.network.Network.run>` the same rule runs without a hand-written loop
(:meth:`Network.plasticity <neurosim.network.Network.plasticity>`).
"""
from __future__ import annotations

import torch

from ..errors import NeurosimError, check_finite, check_int, check_last_dim, check_positive
from ..projections import Dense
from ..projections.eligibility import (ThreeFactorParameters, ThreeFactorState, deposit, modulator_tensor,
                                       three_factor_initial_state, three_factor_step)

__all__ = ["ThreeFactor", "ThreeFactorParameters", "ThreeFactorState", "three_factor_step",
           "three_factor_initial_state", "modulator_tensor", "LocalRule", "deposit"]


def bound_projection(projection, rule: str, accepts: tuple = (Dense,)):
    """``projection`` if a rule may change its weight (one of the types ``accepts``, without Dale's
    law); a clear error otherwise."""
    if not isinstance(projection, accepts):
        kinds = " or ".join(k.__name__ for k in accepts)
        raise NeurosimError(f"{rule} needs a {kinds} projection, got {type(projection).__name__}")
    if projection.signs is not None:
        raise NeurosimError(f"{rule} cannot act on a projection under Dale's law: its effective weight is |W| "
                            "times signs, not the weight the rule changes")
    return projection


def check_activity(name: str, x: torch.Tensor, batch: int | None, n: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise NeurosimError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    check_last_dim(name, x, n, 2)
    if batch is not None and x.shape[0] != batch:
        raise NeurosimError(f"{name} has batch {x.shape[0]} but the rule's state has batch {batch}")
    check_finite(name, x)


class LocalRule:
    """A local rule bound to a projection of one of the types ``accepts``: validated parameters (of
    type ``Params``) and ``dt``, and activity checks. :meth:`_deposit` puts a change ``dW`` of a
    :class:`~neurosim.projections.Dense` weight (inside its connectivity mask) into
    ``weight.grad`` as :math:`-\\Delta W`."""

    Params: type
    accepts: tuple = (Dense,)

    def __init__(self, projection, params=None, dt: float = 1.0):
        self.projection = bound_projection(projection, type(self).__name__, self.accepts)
        params = self.Params() if params is None else params
        if not isinstance(params, self.Params):
            raise NeurosimError(f"params must be {self.Params.__name__}, got {type(params).__name__}")
        check_positive("dt", dt)
        self.params, self.dt = params, float(dt)

    def _activity(self, pre: torch.Tensor, post: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``pre`` and ``post`` checked against the projection and the state's ``batch``, detached, in the weight's dtype."""
        proj = self.projection
        check_activity("pre", pre, batch, proj.n_in)
        check_activity("post", post, batch, proj.n_out)
        dtype = proj.weight.dtype
        return pre.detach().to(dtype), post.detach().to(dtype)

    def _deposit(self, dw: torch.Tensor) -> None:
        proj = self.projection
        deposit(proj.weight, dw if proj.mask is None else dw * proj.mask)


class ThreeFactor(LocalRule):
    """The three-factor rule bound to a :class:`~neurosim.projections.Dense` projection.

    ``rule = ThreeFactor(projection, params, dt=1.0)``; ``state = rule.initial_state(batch)``;
    ``state = rule.step(pre, post, modulator, state)`` adds :math:`-\\Delta W` to
    ``projection.weight.grad`` (accumulating over steps). With a connectivity mask only existing
    synapses change.
    """

    Params = ThreeFactorParameters

    def initial_state(self, batch: int) -> ThreeFactorState:
        w = self.projection.weight
        return three_factor_initial_state(check_int("batch", batch), self.projection.n_in, self.projection.n_out,
                                          w.dtype, w.device)

    def step(self, pre: torch.Tensor, post: torch.Tensor, modulator, state: ThreeFactorState) -> ThreeFactorState:
        pre, post = self._activity(pre, post, state.x.shape[0])
        with torch.no_grad():
            state, dw = three_factor_step(pre, post, modulator, state, self.params, self.dt)
            self._deposit(dw)
        return state
