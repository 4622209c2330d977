"""Diffusion (DDPM): a noise schedule, the forward process, the noise-prediction loss, samplers.

The forward process adds a little Gaussian noise at each of ``T`` steps,

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I),

so that, with alpha_t = 1 - beta_t and alpha_bar_t = prod_{s <= t} alpha_s, any step is one draw
away from the data:

    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I).

A network ``eps_model(x_t, t, y)`` learns to predict ``eps`` (the loss is a plain mean squared
error), and a sampler runs the process backwards from pure noise: ``ancestral_sample`` takes all
``T`` steps, adding fresh noise at each; ``ddim_sample`` takes a few large deterministic steps.
Classifier-free guidance (``guided``) mixes the conditional and unconditional predictions.

Steps are indexed ``t = 0 .. T-1`` in code: ``alpha_bar[t]`` belongs to the paper's x_{t+1}, and
``alpha_bar`` "before" step 0 is 1 (the data).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from mmcourse.nn.validate import positive_int

SCHEDULES = ("linear", "cosine")
EpsModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def linear_betas(T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> torch.Tensor:
    """(T,) betas rising linearly from ``beta_1`` to ``beta_T`` (Ho et al. use T = 1000).

    For fewer steps, scale both ends by 1000 / T so that the total noise stays comparable.
    """
    positive_int("T", T)
    if not 0.0 < beta_1 <= beta_T < 1.0:
        raise ValueError(f"expected 0 < beta_1 <= beta_T < 1, got {beta_1}, {beta_T}")
    return torch.linspace(beta_1, beta_T, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """(T,) betas whose alpha_bar follows cos^2 (Nichol & Dhariwal): slow at both ends."""
    positive_int("T", T)
    if s < 0 or not 0.0 < max_beta < 1.0:
        raise ValueError(f"expected s >= 0 and 0 < max_beta < 1, got {s}, {max_beta}")
    u = torch.arange(T + 1, dtype=torch.float64) / T  # (T + 1,) from 0 to 1
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # (T + 1,)
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)  # (T,)


class NoiseSchedule(nn.Module):
    """The constants of a diffusion process with ``T`` steps, kept as float32 buffers.

    Build one with ``NoiseSchedule.make("cosine", T)`` or from your own betas (T,) in (0, 1).
    Holds ``betas``, ``alphas``, ``alpha_bar`` (all (T,)) and ``alpha_bar_prev`` (the same,
    shifted by one, with 1 in front); it moves with ``.to(device)``.
    """

    def __init__(self, betas: torch.Tensor) -> None:
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or len(betas) == 0:
            raise ValueError(f"expected betas of shape (T,), got {tuple(betas.shape)}")
        if not ((betas > 0) & (betas < 1)).all():
            raise ValueError("expected every beta in (0, 1)")
        alpha_bar = torch.cumprod(1 - betas, 0)  # computed in float64, stored in float32
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        for name, value in (
            ("betas", betas),
            ("alphas", 1 - betas),
            ("alpha_bar", alpha_bar),
            ("alpha_bar_prev", prev),
        ):
            self.register_buffer(name, value.float(), persistent=False)

    @classmethod
    def make(cls, kind: str = "cosine", T: int = 100) -> NoiseSchedule:
        """A ``"linear"`` (scaled to T steps) or ``"cosine"`` schedule of ``T`` steps."""
        positive_int("T", T)
        if kind == "linear":
            return cls(linear_betas(T, 1e-4 * 1000 / T, min(0.02 * 1000 / T, 0.999)))
        if kind == "cosine":
            return cls(cosine_betas(T))
        raise ValueError(f"schedule kind must be one of {SCHEDULES}, got {kind!r}")

    @property
    def T(self) -> int:
        return len(self.betas)

    def snr(self) -> torch.Tensor:
        """(T,) signal-to-noise ratio alpha_bar / (1 - alpha_bar) of x_t."""
        return self.alpha_bar / (1 - self.alpha_bar)

    def check_t(self, t: torch.Tensor) -> torch.Tensor:
        """Raise a clear error unless ``t`` holds integer steps in 0 .. T-1."""
        if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"expected integer steps t (a long tensor), got {t!r}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.T):
            raise ValueError(
                f"expected steps t in 0..{self.T - 1}, got {int(t.min())}..{int(t.max())}"
            )
        return t

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps; x0, eps (B, ...), t (B,)."""
        self.check_t(t)
        if eps.shape != x0.shape or t.shape != x0.shape[:1]:
            raise ValueError(
                f"expected x0 and eps of the same shape (B, ...) and t of shape (B,), got "
                f"{tuple(x0.shape)}, {tuple(eps.shape)}, {tuple(t.shape)}"
            )
        ab = self.alpha_bar[t].to(x0.dtype).view(-1, *[1] * (x0.ndim - 1))  # (B, 1, ...)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def diffusion_loss(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    y: torch.Tensor,
    *,
    p_uncond: float = 0.0,
    null_label: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The noise-prediction loss E ||eps - eps_model(x_t, t, y)||^2 at random steps t.

    With ``p_uncond > 0`` each label is replaced by ``null_label`` with that probability, so
    that one network learns both the conditional and the unconditional model (the training
    half of classifier-free guidance).
    """
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must be a probability in [0, 1], got {p_uncond!r}")
    if p_uncond > 0 and null_label is None:
        raise ValueError("p_uncond > 0 needs the null_label that stands for 'no class'")
    B, dev = x0.shape[0], x0.device
    t = torch.randint(0, schedule.T, (B,), generator=generator, device=dev)  # (B,)
    eps = torch.randn(x0.shape, generator=generator, device=dev, dtype=x0.dtype)
    if p_uncond > 0:
        drop = torch.rand(B, generator=generator, device=dev) < p_uncond  # (B,)
        y = torch.where(drop, torch.full_like(y, int(null_label)), y)
    return (eps_model(schedule.q_sample(x0, t, eps), t, y) - eps).pow(2).mean()


def guide(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: eps_uncond + scale (eps_cond - eps_uncond).

    ``scale = 0``: the unconditional model; ``1``: the conditional one; ``> 1``: pushed further
    towards what distinguishes the class.
    """
    return eps_uncond + scale * (eps_cond - eps_uncond)


def guided(eps_model: EpsModel, scale: float, null_label: int) -> EpsModel:
    """``eps_model`` with classifier-free guidance: one batched call for both predictions."""
    if not isinstance(scale, int | float) or not math.isfinite(scale) or scale < 0:
        raise ValueError(f"guidance scale must be a finite number >= 0, got {scale!r}")

    def eps_guided(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if scale == 1:
            return eps_model(x, t, y)
        null = torch.full_like(y, null_label)
        eps = eps_model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))  # (2B, ...)
        eps_cond, eps_uncond = eps.chunk(2)
        return guide(eps_uncond, eps_cond, scale)

    return eps_guided


def _start(
    shape: Sequence[int],
    y: torch.Tensor,
    schedule: NoiseSchedule,
    generator: torch.Generator | None,
) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point():
        raise ValueError(f"expected labels y as a 1-D integer tensor (B,), got {y!r}")
    return torch.randn(
        (len(y), *shape), generator=generator, device=schedule.betas.device
    )  # x_T ~ N(0, I): (B, *shape)


def predict_x0(x: torch.Tensor, eps: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The forward closed form solved for x_0: (x_t - sqrt(1 - ab) eps) / sqrt(ab)."""
    return (x - (1 - ab).sqrt() * eps) / ab.sqrt()


@torch.no_grad()
def ancestral_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    y: torch.Tensor,
    shape: Sequence[int],
    *,
    clip: float | None = None,
    generator: torch.Generator | None = None,
    trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """DDPM sampling: all T steps, x_{t-1} = mean(x_t, eps_hat) + sigma_t z, no noise at the end.

    The mean is that of the forward posterior q(x_{t-1} | x_t, x_0) at the model's estimate
    x0_hat = predict_x0(x_t, eps_hat), which equals
    (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_hat) / sqrt(alpha_t); sigma_t^2 is that
    posterior's variance beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t), 0 at the last step.
    ``clip``: clamp x0_hat to [-clip, clip] first (the data range), which keeps early steps of a
    schedule whose last betas are near 1 from amplifying small errors of eps_hat.
    Returns x_0 ``(B, *shape)``, and with ``trajectory=True`` also [x_T, ..., x_0] (T + 1 tensors).
    """
    _clip(clip)
    x = _start(shape, y, schedule, generator)  # (B, *shape)
    path = [x]
    for t in reversed(range(schedule.T)):
        tt = torch.full((len(y),), t, device=x.device, dtype=torch.long)
        eps = eps_model(x, tt, y.to(x.device))
        a, ab, ab_prev = schedule.alphas[t], schedule.alpha_bar[t], schedule.alpha_bar_prev[t]
        x0_hat = predict_x0(x, eps, ab)
        if clip is not None:
            x0_hat = x0_hat.clamp(-clip, clip)
        # posterior mean: a weighted sum of x0_hat and x_t
        mean = (ab_prev.sqrt() * (1 - a) * x0_hat + a.sqrt() * (1 - ab_prev) * x) / (1 - ab)
        var = (1 - a) * (1 - ab_prev) / (1 - ab)
        if t > 0:
            z = torch.randn(x.shape, generator=generator, device=x.device)
            x = mean + var.sqrt() * z
        else:
            x = mean  # alpha_bar_prev = 1: the mean is x0_hat itself
        if trajectory:
            path.append(x)
    return (x, path) if trajectory else x


def _clip(clip: float | None) -> None:
    if clip is not None and (not isinstance(clip, int | float) or not clip > 0):
        raise ValueError(f"clip must be None or a number > 0, got {clip!r}")


def ddim_timesteps(T: int, steps: int) -> torch.Tensor:
    """``steps`` evenly spaced indices from T-1 down to 0 (both ends included)."""
    positive_int("T", T)
    positive_int("steps", steps)
    if steps > T:
        raise ValueError(f"steps must be at most T = {T}, got {steps}")
    if steps == 1:
        return torch.tensor([T - 1])
    return torch.linspace(T - 1, 0, steps).round().long()


def ddim_step(
    x: torch.Tensor,
    eps: torch.Tensor,
    ab: torch.Tensor,
    ab_next: torch.Tensor,
    clip: float | None = None,
) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0) from noise level ``ab`` to ``ab_next``.

    x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab) (clamped to [-clip, clip] if asked; eps is then
    recomputed from it), and x' = sqrt(ab_next) x0_hat + sqrt(1 - ab_next) eps: the closed form
    of the forward process, run with the predicted x_0 and the predicted noise.
    """
    x0_hat = predict_x0(x, eps, ab)
    if clip is not None:
        x0_hat = x0_hat.clamp(-clip, clip)
        eps = (x - ab.sqrt() * x0_hat) / (1 - ab).sqrt()
    return ab_next.sqrt() * x0_hat + (1 - ab_next).sqrt() * eps


@torch.no_grad()
def ddim_sample(
    eps_model: EpsModel,
    schedule: NoiseSchedule,
    y: torch.Tensor,
    shape: Sequence[int],
    steps: int,
    *,
    clip: float | None = None,
    generator: torch.Generator | None = None,
    trajectory: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """DDIM sampling (eta = 0): ``steps`` deterministic jumps through ``ddim_timesteps``.

    The only randomness is the starting noise x_T; the last jump lands on alpha_bar = 1, i.e.
    on the model's estimate of x_0. Returns x_0 ``(B, *shape)`` (and the trajectory if asked).
    """
    _clip(clip)
    ts = ddim_timesteps(schedule.T, steps).tolist()
    x = _start(shape, y, schedule, generator)
    path = [x]
    one = torch.ones((), device=x.device)
    for i, t in enumerate(ts):
        tt = torch.full((len(y),), t, device=x.device, dtype=torch.long)
        eps = eps_model(x, tt, y.to(x.device))
        ab_next = schedule.alpha_bar[ts[i + 1]] if i + 1 < len(ts) else one
        x = ddim_step(x, eps, schedule.alpha_bar[t], ab_next, clip)
        if trajectory:
            path.append(x)
    return (x, path) if trajectory else x
