"""Pointwise and per-coordinate (pixel-wise) mutual information from an ε-predictor (Info-Decomp, Eq. 4–6).

For an image ``x`` and two conditions ``cond`` and ``ref`` of one denoiser ``ε̂(z | c)`` (with ``ref ⊂ cond``,
e.g. caption vs empty prompt, or caption vs caption-without-the-word)::

    i^s(x) = ½ ∫ E_ε[ ‖ε − ε̂(z_α|ref)‖² − ‖ε − ε̂(z_α|cond)‖² ] dα        (Eq. 5, first line; from Eq. 4)
    i^o(x) = ½ ∫ E_ε[ ‖ε̂(z_α|cond) − ε̂(z_α|ref)‖² ] dα                  (Eq. 5, second line; orthogonality)

with ``z_α = sqrt(σ(α)) x + sqrt(σ(−α)) ε`` (:func:`xattr.info.noise_channel`). Both average to
``I(X; cond) − I(X; ref)`` over ``x`` (the CMI for nested conditions); ``i^o ≥ 0`` always, ``i^s`` is
``log p(x|cond) − log p(x|ref)`` and may be negative. The per-coordinate maps are the same integrands before the
sum over coordinates (Eq. 6); :func:`pixel_map` sums an image map over channels (§2.3: "we sum over the
contribution from each channel").

Integration (§2.4): ``integration="sample"`` draws one log-SNR per (image, draw) from the truncated logistic of
:class:`xattr.info.logsnr.TruncatedLogistic` and weights it by ``1/q(α)``; ``integration="quadrature"`` uses
``n_draws`` Gauss–Legendre nodes over the same range ``[loc − scale·clip, loc + scale·clip]`` (shared by all
images). Either way each (image, node) gets one ``ε``. **Common random numbers**: every condition of an image sees
the same ``(α, ε)``, and all conditions go through ``eps_fn`` in one stacked call per chunk of draws (the authors
stack ``[wrong…, correct, null]`` in one UNet batch the same way).
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral

import torch

from xattr.errors import XattrError
from xattr.info.channel import noise_channel
from xattr.info.logsnr import INTEGRATIONS, TruncatedLogistic
from xattr.utils.precision import LOW_PRECISION, full_precision

__all__ = ["pointwise_information", "pointwise_information_many", "pixel_map"]

EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def pointwise_information(eps_fn: EpsFn, x: torch.Tensor, cond: torch.Tensor, ref: torch.Tensor, *,
                          n_draws: int = 100, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                          generator: torch.Generator | None = None, integration: str = "sample",
                          chunk_size: int = 256) -> dict[str, torch.Tensor]:
    """``i^o``, ``i^s`` (Eq. 5) and their per-coordinate maps (Eq. 6) of ``cond`` against ``ref``, in nats.

    Args:
        eps_fn: ``eps_fn(z [N,...], logsnr [N], c [N,...]) -> eps_hat [N,...]``, the ε-predictor conditioned on
            ``c`` (a UNet with prompt embeddings, or :meth:`xattr.info.JointGaussian.eps_denoiser`).
        x: ``[B,...]`` images / latents ``[B,C,H,W]`` or vectors ``[B,d]``, float32 or float64 (bf16/fp16 run in
            float32); results have its dtype and device.
        cond, ref: ``[B,...]`` conditions of one shape (any dtype ``eps_fn`` accepts), row ``b`` for image ``b``.
        n_draws: ``(α, ε)`` draws (or quadrature nodes) per image; the authors use 100.
        loc, scale, clip: the truncated logistic over the log-SNR (authors' CLI defaults 1, 2, 3: range [−5, 7]).
        generator: the draws' RNG (on ``x``'s device); the result does not depend on ``chunk_size``.
        integration: ``"sample"`` (importance sampling, §2.4) or ``"quadrature"`` (Gauss–Legendre nodes).
        chunk_size: rows per ``eps_fn`` call, rounded down to whole draws (at least one draw = ``2·B`` rows).

    Returns:
        ``{"i_o": [B], "i_s": [B], "i_o_map": x.shape, "i_s_map": x.shape}``; each map sums to its value exactly
        (the value is computed as the map's sum).
    """
    if cond.shape != ref.shape:
        raise XattrError(f"pointwise_information: cond has shape {tuple(cond.shape)} but ref has "
                         f"{tuple(ref.shape)}; give both conditions for every image, in one shape")
    out = pointwise_information_many(eps_fn, x, cond[:, None], ref, n_draws=n_draws, loc=loc, scale=scale,
                                     clip=clip, generator=generator, integration=integration,
                                     chunk_size=chunk_size)
    return {key: value[:, 0] for key, value in out.items()}


@torch.no_grad()
def pointwise_information_many(eps_fn: EpsFn, x: torch.Tensor, conds: torch.Tensor, ref: torch.Tensor, *,
                               n_draws: int = 100, loc: float = 1.0, scale: float = 2.0, clip: float = 3.0,
                               generator: torch.Generator | None = None, integration: str = "sample",
                               chunk_size: int = 256) -> dict[str, torch.Tensor]:
    """:func:`pointwise_information` of ``K`` conditions of each image against one shared ``ref``, with common
    draws across all ``K`` (ARO-style scoring of candidate captions; differences of two CMIs against one context).

    ``conds`` is ``[B,K,...]`` and ``ref`` ``[B,...]``; each ``eps_fn`` call stacks ``K + 1`` blocks of rows
    (condition-major: ``conds[:, 0]`` rows, ..., ``conds[:, K-1]`` rows, ``ref`` rows), every block with the same
    ``z`` and ``logsnr``. Returns ``i_o``, ``i_s`` ``[B,K]`` and ``i_o_map``, ``i_s_map`` ``[B,K,...]``
    (``...`` = ``x.shape[1:]``).
    """
    _check_inputs(x, conds, ref, n_draws, integration, chunk_size)
    sampler = TruncatedLogistic(loc, scale, clip)
    with full_precision(x.device):  # squared-error differences need fp32/fp64 whatever precision= the caller runs
        x = x.float() if x.dtype in LOW_PRECISION else x
        logsnr, weight = _nodes(sampler, n_draws, x.shape[0], integration, generator, x.dtype, x.device)
        i_o_map, i_s_map = _integrate(eps_fn, x, conds, ref, logsnr, weight, generator, chunk_size)
    return {"i_o": i_o_map.flatten(2).sum(-1), "i_s": i_s_map.flatten(2).sum(-1),
            "i_o_map": i_o_map, "i_s_map": i_s_map}


def pixel_map(coordinate_map: torch.Tensor) -> torch.Tensor:
    """Sum a per-coordinate map ``[B,C,H,W]`` over channels: ``[B,1,H,W]`` (seed §2.3); ``[B,K,C,H,W]`` gives
    ``[B,K,1,H,W]``."""
    if coordinate_map.dim() < 4:
        raise XattrError(f"pixel_map needs an image map [B,C,H,W], got shape {tuple(coordinate_map.shape)}; "
                         "vector maps [B,d] have no channels to sum")
    return coordinate_map.sum(dim=-3, keepdim=True)


def _check_inputs(x, conds, ref, n_draws, integration, chunk_size) -> None:
    if x.dim() < 2 or not x.is_floating_point():
        raise XattrError(f"pointwise_information: x must be a float tensor [B,...], got {x.dtype} of shape "
                         f"{tuple(x.shape)}; pass a batch, e.g. x[None] for one image")
    if ref.shape[0] != x.shape[0] or conds.shape[0] != x.shape[0] or conds.dim() < 2:
        raise XattrError(f"pointwise_information: x has {x.shape[0]} images but conds {tuple(conds.shape)} and "
                         f"ref {tuple(ref.shape)}; give one row of conditions per image")
    if conds.shape[2:] != ref.shape[1:]:
        raise XattrError(f"pointwise_information: a condition has shape {tuple(conds.shape[2:])} but ref "
                         f"{tuple(ref.shape[1:])}; cond and ref must have one shape")
    if isinstance(n_draws, bool) or not isinstance(n_draws, Integral) or n_draws < 1:
        raise XattrError(f"pointwise_information: n_draws={n_draws!r} must be an integer >= 1 (e.g. 100)")
    if integration not in INTEGRATIONS:
        raise XattrError(f"pointwise_information: integration={integration!r} is not one of "
                         f"{', '.join(INTEGRATIONS)}")
    if chunk_size < 1:
        raise XattrError(f"pointwise_information: chunk_size={chunk_size} must be >= 1 (rows per eps_fn call)")


def _nodes(sampler: TruncatedLogistic, n_draws: int, batch: int, integration: str, generator, dtype,
           device) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-SNRs and integration weights ``[n_draws, B]`` with ``Σ_n weight · f(α_n) ≈ ∫ f dα`` per image."""
    if integration == "sample":
        logsnr = sampler.sample((n_draws, batch), generator=generator, dtype=dtype, device=device)
        return logsnr, sampler.importance_weight(logsnr) / n_draws
    alpha, weight = sampler.quadrature(n_draws, dtype=dtype, device=device)
    return alpha[:, None].expand(n_draws, batch), weight[:, None].expand(n_draws, batch)


def _integrate(eps_fn, x, conds, ref, logsnr, weight, generator, chunk_size):
    """``½ Σ_n weight_n · integrand_n`` per coordinate for both estimators: ``[B,K,...]`` each."""
    batch, k = conds.shape[:2]
    n_draws = logsnr.shape[0]
    per_call = max(1, chunk_size // ((k + 1) * batch))
    i_o_map = x.new_zeros((batch, k) + x.shape[1:])
    i_s_map = torch.zeros_like(i_o_map)
    expand = (1,) * (x.dim() - 1)
    for start in range(0, n_draws, per_call):
        draws = range(start, min(start + per_call, n_draws))
        eps = torch.stack([torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                           for _ in draws])                                              # [c, B, ...]
        alpha = logsnr[start:draws.stop]                                                 # [c, B]
        z = noise_channel(x.expand_as(eps), alpha.view(*alpha.shape, *expand), eps)
        eps_hat = _stacked_call(eps_fn, z, alpha, conds, ref)                            # [K+1, c, B, ...]
        for j in range(len(draws)):   # one draw at a time: the sums do not depend on chunk_size
            w = weight[start + j].view(batch, 1, *expand)
            hat_conds, hat_ref = eps_hat[:k, j].transpose(0, 1), eps_hat[k, j][:, None]  # [B,K,...], [B,1,...]
            target = eps[j][:, None]
            i_o_map += w * (hat_conds - hat_ref).pow(2)
            i_s_map += w * ((target - hat_ref).pow(2) - (target - hat_conds).pow(2))
    return 0.5 * i_o_map, 0.5 * i_s_map


def _stacked_call(eps_fn, z, alpha, conds, ref):
    """One ``eps_fn`` call on ``K + 1`` condition blocks that share ``z`` ``[c,B,...]`` and ``alpha`` ``[c,B]``."""
    c, batch = alpha.shape
    k = conds.shape[1]
    all_conds = torch.cat([conds, ref[:, None]], dim=1).transpose(0, 1)                 # [K+1, B, ...]
    c_rows = all_conds[:, None].expand(k + 1, c, *all_conds.shape[1:]).reshape(-1, *ref.shape[1:])
    z_rows = z[None].expand(k + 1, *z.shape).reshape(-1, *z.shape[2:])
    a_rows = alpha[None].expand(k + 1, c, batch).reshape(-1)
    eps_hat = eps_fn(z_rows, a_rows, c_rows)
    if eps_hat.shape != z_rows.shape:
        raise XattrError(f"eps_fn returned shape {tuple(eps_hat.shape)} for z of shape {tuple(z_rows.shape)}; "
                         "it must predict eps with z's shape")
    return eps_hat.to(z.dtype).reshape(k + 1, c, *z.shape[1:])
