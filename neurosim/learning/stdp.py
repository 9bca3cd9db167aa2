"""STDP bound to a projection, stepped by hand: Brian2's STDP synapse
(:mod:`neurosim.projections.plasticity` holds the model: parameters, traces, step function).

:class:`STDP` applies the change to the weight of a :class:`~neurosim.projections.Dense` (within
its mask) or :class:`~neurosim.projections.Sparse` projection in place, as Brian2 does; it does
not go through ``.grad`` or an optimiser. Inside :meth:`Network.run
<neurosim.network.Network.run>` the same rule runs without a hand-written loop
(:meth:`Network.plasticity <neurosim.network.Network.plasticity>`).
"""
from __future__ import annotations

import torch

from ..errors import NeurosimError, check_int
from ..projections import Dense, Sparse
from ..projections.plasticity import STDPParameters, STDPState, stdp_step
from .three_factor import LocalRule

__all__ = ["STDP", "STDPParameters", "STDPState", "stdp_step"]


class STDP(LocalRule):
    """STDP bound to a :class:`~neurosim.projections.Dense` or :class:`~neurosim.projections.Sparse` projection.

    ``rule = STDP(projection, params, dt=1.0)``; ``state = rule.initial_state(batch)``;
    ``state = rule.step(pre, post, state)`` changes ``projection.weight`` in place (:mod:`neurosim.projections.plasticity`).
    """

    Params = STDPParameters
    accepts = (Dense, Sparse)

    def initial_state(self, batch: int) -> STDPState:
        check_int("batch", batch)
        w = self.projection.weight
        return STDPState(torch.zeros(batch, self.projection.n_in, dtype=w.dtype, device=w.device),
                         torch.zeros(batch, self.projection.n_out, dtype=w.dtype, device=w.device))

    def step(self, pre: torch.Tensor, post: torch.Tensor, state: STDPState) -> STDPState:
        """One step on spikes ``pre`` ``[B, n_in]`` and ``post`` ``[B, n_out]`` (0 or 1)."""
        pre, post = self._activity(pre, post, state.x.shape[0])
        for name, z in (("pre", pre), ("post", post)):
            if not bool(((z == 0) | (z == 1)).all()):
                raise NeurosimError(f"{name} must hold spikes (0 or 1) for STDP")
        proj = self.projection
        with torch.no_grad():
            if isinstance(proj, Sparse):
                state, w = stdp_step(pre, post, state, self.params, self.dt, proj.weight, (proj.post, proj.pre))
            else:
                state, w = stdp_step(pre, post, state, self.params, self.dt, proj.weight, mask=proj.mask)
            proj.weight.copy_(w)
        return state
