r"""e-prop (Bellec et al. 2020) for a recurrent layer of LIF or adaptive LIF neurons with a leaky readout.

The network is one input, a hidden population (:class:`~neurosim.neurons.LIF` or
:class:`~neurosim.neurons.ALIF`) fed by a Dense input projection and optionally a Dense recurrent
one, and a leaky-integrator readout (:class:`~neurosim.neurons.LI`) fed by a Dense projection.
Hidden neuron :math:`j` has the state :math:`h_j = (v_j, w_j)` (``w`` only for ALIF) and the
input :math:`I_j[t] = \sum_i W^{in}_{ji} x_i[t] + \sum_i W^{rec}_{ji} z_i[t-1]`. Before the reset,

.. math::

    v'_j[t] = v_L + p_{00} (v_j[t-1] - v_L) + p_{01} w_j[t-1] + q_0 I_j[t], \qquad
    w'_j[t] = p_{10} (v_j[t-1] - v_L) + p_{11} w_j[t-1] + q_1 I_j[t],

:math:`z_j[t] = H(v'_j[t] - v_{th})`, and the reset gives :math:`v_j[t] = r_j[t] v'_j[t] + c` with
:math:`r = 1` (``"subtract"``) or :math:`r = 1 - z` (``"zero"``), the reset's own dependence on
:math:`z` not differentiated (``detach_reset``). LIF: :math:`p_{00} = e^{-dt/\tau_m}`, no ``w``;
:math:`q_0 = 1` (``"jump"``) or :math:`1 - p_{00}` (``"current"``), :math:`p_{00} = 1 - dt/\tau_m`
with ``method="euler"``. ALIF: :math:`P` and :math:`q` are its propagator of the population's
method (:func:`~neurosim.neurons.alif.alif_propagator`). Parameters may be per neuron.

**Eligibility.** For a weight :math:`W_{ji}` with presynaptic activity :math:`s_i[t]`
(:math:`x_i[t]` or :math:`z_i[t-1]`), the eligibility vectors are the partial derivatives of
:math:`(v'_j, w'_j)` along the neuron's own state,

.. math::

    \epsilon^v_{ji}[t] = p_{00} r_j[t-1] \epsilon^v_{ji}[t-1] + p_{01} \epsilon^w_{ji}[t-1] + q_0 s_i[t], \qquad
    \epsilon^w_{ji}[t] = p_{10} r_j[t-1] \epsilon^v_{ji}[t-1] + p_{11} \epsilon^w_{ji}[t-1] + q_1 s_i[t],

the eligibility trace :math:`e_{ji}[t] = \psi_j[t] \epsilon^v_{ji}[t]` with the pseudo-derivative
:math:`\psi_j[t]` the hidden population's surrogate derivative at :math:`v'_j[t] - v_{th}` (the
triangle surrogate of width :math:`v_{th}` is Bellec's :math:`\psi` up to their factor
:math:`\gamma = 0.3`), and its low-pass filter with the readout's constant
:math:`\kappa = e^{-dt/\tau_{out}}`: :math:`\bar e_{ji}[t] = \kappa \bar e_{ji}[t-1] + e_{ji}[t]`.

**Learning signal and updates.** The readout is :math:`y_k[t] = \kappa y_k[t-1] + g \sum_j W^{out}_{kj} z_j[t]`
(:math:`g = 1`, or :math:`1 - \kappa` for ``input_mode="current"``). With the output error
:math:`\delta_k[t] = \partial E / \partial y_k[t]` (for instance :math:`y_k - y^*_k`),

.. math::

    L_j[t] = g \sum_k B_{jk} \delta_k[t], \qquad
    \frac{dE}{dW_{ji}} \approx \sum_t L_j[t]\, \bar e_{ji}[t], \qquad
    \frac{dE}{dW^{out}_{kj}} = g \sum_t \delta_k[t]\, \bar z_j[t],

:math:`\bar z_j[t] = \kappa \bar z_j[t-1] + z_j[t]`, summed over the batch. :math:`B = (W^{out})^T`
(``feedback="symmetric"``) makes the hidden update the exact gradient of :math:`E` with the
dependence of hidden states on other hidden neurons' past cut (the recurrent input and the reset
treated as constants), while :math:`E`'s dependence through the readout is kept; ``"random"`` uses a
fixed Gaussian :math:`B` with standard deviation ``feedback_scale`` (default
:math:`1/\sqrt{n_{out}}`). The updates go into ``.grad`` (they are gradients, descent directions).

Online: :meth:`EProp.step` runs one step and updates the traces, :meth:`EProp.learn` deposits
:math:`\sum_k B\delta[t]\bar e[t]` for one step's error. Whole sequence: :meth:`EProp.sequence`
runs all steps, takes :math:`\delta = \partial E/\partial y` of a loss on the readout sequence from
autograd (the readout only), and deposits the same sums, computed with the anti-causal filter
:math:`\sum_t L[t] \bar e[t] = \sum_t \bar L[t] e[t]`, :math:`\bar L[t] = \sum_{t' \ge t} \kappa^{t'-t} L[t']`.
Without a refractory period, synaptic currents or biases.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch

from ..errors import NeurosimError, check_choice, check_finite, check_int, check_last_dim, check_positive
from ..neurons import ALIF, LI, LIF
from ..neurons.alif import alif_propagator
from ..neurons.lif import decay
from ..projections import Dense
from .three_factor import deposit

FEEDBACK = ("symmetric", "random")


@dataclass(frozen=True)
class EPropParameters:
    """``feedback``: ``"symmetric"`` (readout weights transposed) or ``"random"`` (fixed Gaussian,
    drawn from ``seed``, standard deviation ``feedback_scale``, default ``1/sqrt(n_out)``)."""

    feedback: str = "symmetric"
    seed: int = 0
    feedback_scale: float | None = None

    def __post_init__(self):
        check_choice("feedback", self.feedback, FEEDBACK)
        if self.feedback_scale is not None:
            check_positive("feedback_scale", self.feedback_scale)


class Coefficients(NamedTuple):
    """The hidden neuron's own-state propagator (module docstring); numbers or per-neuron ``[N]``."""

    p00: float | torch.Tensor
    p01: float | torch.Tensor
    p10: float | torch.Tensor
    p11: float | torch.Tensor
    q0: float | torch.Tensor
    q1: float | torch.Tensor
    zero_reset: bool


class EPropState(NamedTuple):
    """Network state (``neuron``, last spikes ``z``, readout ``y``), eligibility vectors ``eps_v`` /
    ``eps_w`` and filtered traces ``ebar`` per trained hidden projection, the reset factor ``r``
    and the filtered spikes ``zbar`` for the readout weights."""

    neuron: NamedTuple
    z: torch.Tensor
    y: torch.Tensor
    r: torch.Tensor
    eps_v: tuple
    eps_w: tuple
    ebar: tuple
    zbar: torch.Tensor


def _col(c):
    """A per-neuron coefficient ``[N]`` as ``[N, 1]`` (it scales rows of ``[B, N, n_pre]``)."""
    return c.unsqueeze(-1) if isinstance(c, torch.Tensor) else c


def eligibility_step(s: torch.Tensor, r: torch.Tensor, eps_v: torch.Tensor, eps_w: torch.Tensor | None,
                     c: Coefficients) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of the eligibility vectors for presynaptic activity ``s`` ``[B, n_pre]``, with ``r``
    ``[B, N]`` the previous step's reset factor (used with the zero reset) and ``eps`` ``[B, 1 or N, n_pre]``."""
    s = s.unsqueeze(1)
    ev = r.unsqueeze(-1) * eps_v if c.zero_reset else eps_v
    v = _col(c.p00) * ev + _col(c.q0) * s
    if eps_w is None:
        return v, None
    return v + _col(c.p01) * eps_w, _col(c.p10) * ev + _col(c.p11) * eps_w + _col(c.q1) * s


def _add_gradient(weight: torch.Tensor, g: torch.Tensor) -> None:
    """``weight.grad += g`` (``g`` a gradient, the opposite of a weight change)."""
    deposit(weight, -g)


def _contract(m: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``sum_b m[b, j] e[b, j, i]`` with ``e`` ``[B, 1 or N, n_pre]``."""
    if e.shape[1] == 1:
        return m.t() @ e[:, 0]
    return torch.einsum("bj,bji->ji", m, e)


class EProp:
    """e-prop bound to a network: ``EProp(network, params, hidden=None, readout=None)``.

    ``hidden`` / ``readout`` name the populations (default: the only LIF/ALIF and the only LI).
    Trained are the Dense projections into the hidden population and into the readout whose weight
    requires a gradient. See the module docstring for the equations and the two ways to run it.
    """

    def __init__(self, network, params: EPropParameters | None = None, *, hidden: str | None = None,
                 readout: str | None = None):
        from ..network import Network

        if not isinstance(network, Network):
            raise NeurosimError(f"e-prop needs a neurosim Network, got {type(network).__name__}")
        params = EPropParameters() if params is None else params
        if not isinstance(params, EPropParameters):
            raise NeurosimError(f"params must be EPropParameters, got {type(params).__name__}")
        self.network, self.params = network, params
        pops = network.populations
        self.hidden = hidden or self._only([n for n, p in pops.items() if isinstance(p, (LIF, ALIF))], "hidden")
        self.readout = readout or self._only([n for n, p in pops.items() if isinstance(p, LI)], "readout")
        for name, kind in ((self.hidden, (LIF, ALIF)), (self.readout, LI)):
            if name not in pops or not isinstance(pops[name], kind):
                raise NeurosimError(f"e-prop: {name!r} is not a {' or '.join(k.__name__ for k in kind)} population "
                                    "of the network")
        if len(pops) != 2 or len(network.inputs) != 1:
            raise NeurosimError("e-prop needs a network of one input, one hidden population and one readout, "
                                f"got inputs {list(network.inputs)} and populations {list(pops)}")
        self.input = next(iter(network.inputs))
        self.in_proj = self.rec_proj = self.out_proj = None
        for cname, c in network.connections.items():
            key = {(self.input, self.hidden): "in_proj", (self.hidden, self.hidden): "rec_proj",
                   (self.hidden, self.readout): "out_proj"}.get((c.pre, c.post))
            if key is None:
                raise NeurosimError(f"e-prop cannot handle projection {cname!r} from {c.pre!r} to {c.post!r}")
            p = c.projection
            if not isinstance(p, Dense) or p.mask is not None or p.signs is not None or p.bias is not None:
                raise NeurosimError(f"e-prop needs plain Dense projections (no mask, Dale's law or bias); "
                                    f"{cname!r} is not one")
            setattr(self, key, p)
        if self.in_proj is None or self.out_proj is None:
            raise NeurosimError("e-prop needs an input projection into the hidden population and one into the readout")
        self.coeffs = self._coefficients(pops[self.hidden], network.dt)
        out = pops[self.readout].params
        if isinstance(out.tau_mem, torch.Tensor) and out.tau_mem.numel() > 1:
            raise NeurosimError("e-prop needs one readout time constant (its eligibility filter), got one per neuron")
        self.kappa = math.exp(-network.dt / float(out.tau_mem))
        self.gain = 1.0 if out.input_mode == "jump" else 1.0 - self.kappa
        n_hidden, n_out = pops[self.hidden].n, pops[self.readout].n
        self.B = None
        if params.feedback == "random":
            std = params.feedback_scale or 1.0 / math.sqrt(n_out)
            g = torch.Generator().manual_seed(params.seed)
            w = self.out_proj.weight
            self.B = (torch.randn(n_hidden, n_out, generator=g, dtype=torch.float64) * std).to(w.dtype).to(w.device)

    @staticmethod
    def _only(names: list[str], what: str) -> str:
        if len(names) != 1:
            raise NeurosimError(f"e-prop: the network has {len(names)} candidates for the {what} population; "
                                "name it explicitly")
        return names[0]

    @staticmethod
    def _coefficients(pop, dt: float) -> Coefficients:
        p = pop.params
        if bool(torch.as_tensor(p.tau_ref).gt(0).any()):
            raise NeurosimError("e-prop here does not model the refractory period: use tau_ref=0")
        zero = p.reset == "zero"
        if not p.detach_reset:
            raise NeurosimError("e-prop treats the reset as a constant: use detach_reset=True")
        if isinstance(pop, LIF):
            if p.tau_syn_exc is not None:
                raise NeurosimError("e-prop here does not model synaptic currents: leave tau_syn_exc unset")
            beta = decay(dt, p.tau_mem, p.method)
            return Coefficients(beta, 0.0, 0.0, 0.0, 1.0 if p.input_mode == "jump" else 1 - beta, 0.0, zero)
        p00, p01, p10, p11, q0, q1 = alif_propagator(p.tau_mem, p.tau_adapt, p.a, dt, p.method)
        if p.input_mode == "jump":
            q0, q1 = 1.0, 0.0
        return Coefficients(p00, p01, p10, p11, q0, q1, zero)

    @property
    def projections(self) -> list[tuple[Dense, bool]]:
        """Trained hidden projections with whether their presynaptic activity is the hidden spikes."""
        return [(p, p is self.rec_proj) for p in (self.in_proj, self.rec_proj)
                if p is not None and p.weight.requires_grad]

    def feedback(self) -> torch.Tensor:
        """``B`` ``[n_hidden, n_out]``."""
        return self.out_proj.weight.detach().t() if self.B is None else self.B

    # -- running ---------------------------------------------------------------------------------
    def initial_state(self, batch: int) -> EPropState:
        check_int("batch", batch)
        pop, out = self.network.populations[self.hidden], self.network.populations[self.readout]
        alif = isinstance(pop, ALIF)
        kw = dict(dtype=pop.dtype, device=self.in_proj.weight.device)
        eps_v = tuple(torch.zeros(batch, 1, p.n_in, **kw) for p, _ in self.projections)
        eps_w = tuple(torch.zeros_like(e) if alif else None for e in eps_v)
        ebar = tuple(torch.zeros(batch, pop.n, p.n_in, **kw) for p, _ in self.projections)
        return EPropState(pop.initial_state(batch, kw["device"]), torch.zeros(batch, pop.n, **kw),
                          out.initial_state(batch, kw["device"]).v, torch.ones(batch, pop.n, **kw), eps_v, eps_w,
                          ebar, torch.zeros(batch, pop.n, **kw))

    def _hidden_step(self, drive: torch.Tensor, state: EPropState):
        """The hidden population's step on ``drive`` (its total input); returns ``(z, neuron, psi, r)``."""
        pop = self.network.populations[self.hidden]
        p, c, st = pop.params, self.coeffs, state.neuron
        dv = st.v - p.v_leak
        v_pre = p.v_leak + c.p00 * dv + c.q0 * drive
        if isinstance(pop, ALIF):
            v_pre = v_pre + c.p01 * st.w
        psi = pop.spike_fn.derivative(v_pre - p.v_th)
        z, neuron = pop.step(drive, st)
        r = 1 - z if c.zero_reset else state.r
        return z, neuron, psi, r

    def step(self, x: torch.Tensor, state: EPropState, on_step: Callable | None = None, t: int = 0):
        """One step on input ``x`` ``[B, n_in]``: returns ``(y, state)`` with the readout ``y``
        ``[B, n_out]``; traces updated (no weight change: see :meth:`learn`). ``on_step(t, states)``
        is called after the step with ``{population: (neuron state, output)}``."""
        check_last_dim("input to e-prop", x, self.in_proj.n_in, 2)
        if x.shape[0] != state.z.shape[0]:
            raise NeurosimError(f"input to e-prop has batch {x.shape[0]} but the state has batch {state.z.shape[0]}")
        check_finite("input to e-prop", x)
        with torch.no_grad():
            x = x.to(self.in_proj.weight.dtype)
            drive = self.in_proj(x)
            if self.rec_proj is not None:
                drive = drive + self.rec_proj(state.z)
            z, neuron, psi, r = self._hidden_step(drive, state)
            eps_v, eps_w, ebar = [], [], []
            for (proj, recurrent), ev, ew, eb in zip(self.projections, state.eps_v, state.eps_w, state.ebar):
                ev, ew = eligibility_step(state.z if recurrent else x, state.r, ev, ew, self.coeffs)
                eps_v.append(ev)
                eps_w.append(ew)
                ebar.append(self.kappa * eb + psi.unsqueeze(-1) * ev)
            y = self._readout_step(state.y, z)
            state = EPropState(neuron, z, y, r, tuple(eps_v), tuple(eps_w), tuple(ebar),
                               self.kappa * state.zbar + z)
        if on_step is not None:
            on_step(t, self._network_state(neuron, z, y))
        return y, state

    def _network_state(self, neuron, z: torch.Tensor, y: torch.Tensor) -> dict:
        """The state in :meth:`Network.initial_state`'s form: population -> (state, output)."""
        out = self.network.populations[self.readout]
        return {self.hidden: (neuron, z), self.readout: (out.State(y), y)}

    def _readout_step(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        out = self.network.populations[self.readout]
        v, _ = out.step(self.out_proj(z), out.State(y))
        return v

    def learn(self, error: torch.Tensor, state: EPropState) -> None:
        """Deposit one step's update for the output error ``error`` = :math:`\\partial E / \\partial y[t]`
        ``[B, n_out]`` (e.g. ``y - y_target``) into ``.grad``, summed over the batch."""
        check_last_dim("e-prop error", error, self.out_proj.n_out, 2)
        check_finite("e-prop error", error)
        with torch.no_grad():
            error = error.to(self.out_proj.weight.dtype)
            L = self.gain * error @ self.feedback().t()
            for (proj, _), eb in zip(self.projections, state.ebar):
                _add_gradient(proj.weight, _contract(L, eb))
            if self.out_proj.weight.requires_grad:
                _add_gradient(self.out_proj.weight, self.gain * error.t() @ state.zbar)

    def sequence(self, xs: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                 on_step: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the whole sequence ``xs`` ``[T, B, n_in]``, deposit the update for the loss
        ``loss_fn(ys)`` of the readout sequence ``ys`` ``[T, B, n_out]``; returns ``(ys, loss)``.
        ``on_step`` as in :meth:`step`, after every step."""
        check_last_dim("input to e-prop", xs, self.in_proj.n_in, 3)
        check_finite("input to e-prop", xs)
        T, B = xs.shape[:2]
        state = self.initial_state(B)
        with torch.no_grad():
            xs = xs.to(self.in_proj.weight.dtype)
            drives = self.in_proj(xs)
            zs, ys, psis, rs = [], [], [], []
            neuron, z_prev, r, y = state.neuron, state.z, state.r, state.y
            for t in range(T):
                drive = drives[t] if self.rec_proj is None else drives[t] + self.rec_proj(z_prev)
                z, neuron, psi, r = self._hidden_step(drive, state._replace(neuron=neuron, r=r))
                y = self._readout_step(y, z)
                for seq, v in ((zs, z), (ys, y), (psis, psi), (rs, r)):
                    seq.append(v)
                z_prev = z
                if on_step is not None:
                    on_step(t, self._network_state(neuron, z, y))
            zs, ys = torch.stack(zs), torch.stack(ys)
        ys = ys.detach().requires_grad_(True)
        loss = loss_fn(ys)
        (delta,) = torch.autograd.grad(loss, ys)
        with torch.no_grad():
            delta = delta.to(zs.dtype)
            dbar = torch.empty_like(delta)  # anti-causal filter of the output error
            acc = torch.zeros_like(delta[0])
            for t in range(T - 1, -1, -1):
                acc = self.kappa * acc + delta[t]
                dbar[t] = acc
            if self.out_proj.weight.requires_grad:
                _add_gradient(self.out_proj.weight, self.gain * torch.einsum("tbk,tbj->kj", dbar, zs))
            m = (self.gain * dbar @ self.feedback().t()) * torch.stack(psis)  # L-bar times psi, [T, B, N]
            z_before = torch.cat([state.z.unsqueeze(0), zs[:-1]])
            r_before = torch.cat([state.r.unsqueeze(0), torch.stack(rs)[:-1]])
            for (proj, recurrent), ev, ew in zip(self.projections, state.eps_v, state.eps_w):
                pre = z_before if recurrent else xs
                if ew is None and not self.coeffs.zero_reset and not isinstance(self.coeffs.p00, torch.Tensor):
                    # eps_v does not depend on the postsynaptic neuron: one filter and one contraction
                    eps = torch.empty_like(pre)
                    e = ev[:, 0]
                    for t in range(T):
                        e = self.coeffs.p00 * e + self.coeffs.q0 * pre[t]
                        eps[t] = e
                    _add_gradient(proj.weight, torch.einsum("tbj,tbi->ji", m, eps))
                    continue
                grad = torch.zeros_like(proj.weight)
                for t in range(T):
                    ev, ew = eligibility_step(pre[t], r_before[t], ev, ew, self.coeffs)
                    grad += _contract(m[t], ev)
                _add_gradient(proj.weight, grad)
        return ys.detach(), loss.detach()
