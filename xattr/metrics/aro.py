"""Relation testing with a diffusion model (Info-Decomp, Sec. 3.1 / Tables 1–2; ARO, Yuksekgonul et al. 2023).

Each image ``x`` comes with ``K`` candidate captions, the true one first (``candidates``: ARO's VG-R/VG-A pairs,
COCO/Flickr-Order's caption and four shuffles, ``shapes_captions``' swaps and shuffles). A score ``s(x, y)`` is
computed for every candidate and the test is passed when the true caption has the highest::

    correct = 1[ s(x, y_0) > max_{k≥1} s(x, y_k) ]                                   (Sec. 3.1, the accuracy)

Scores (all from ONE set of ``(α, ε)`` draws per image shared by every candidate — common random numbers, the
ranking depends on differences — and one stacked denoiser call per chunk of draws,
:func:`xattr.info.pointwise_information_many`):

- ``info``: ``i^o(x; y) = ½ ∫ E_ε ‖ε̂(z_α|y) − ε̂(z_α|"")‖² dα`` against the empty prompt (Eq. 5; the paper's
  "Info."), or ``i^s`` with ``estimator="i_s"``;
- ``info_s``: always ``i^s(x; y) = ½ ∫ E_ε[‖ε − ε̂(z_α|"")‖² − ‖ε − ε̂(z_α|y)‖²] dα`` (Eq. 4–5, the log-likelihood
  ratio ``log p(x|y) − log p(x|"")``) on the same draws, so the ``i^o`` vs ``i^s`` ablation is paired and costs no
  denoiser call (equal to ``info`` when ``estimator="i_s"``);
- ``diffitm``: DiffITM's negative MMSE (Krojer et al. 2023), ``−mean_n ‖ε_n − ε̂(z_{α_n}|y)‖²`` over the same draws
  (unweighted: their score is a plain mean over sampled noise levels; here the levels are the estimator's
  truncated-logistic draws rather than their uniform timesteps, so the two scores see identical ``(α, ε)``).

Ties count as failures (strict ``>``): ``argmax`` would give a tie to index 0, the true caption.

Per image ``[B]`` values ``<score>.correct`` (0/1), ``<score>.margin`` (``s(y_0) − max_{k≥1} s(y_k)``), and
``[B,T]`` curves ``<score>.pairwise`` (``T = K−1``: ``1[s(y_0) > s(y_k)]`` — the two-way test against candidate
``k`` alone, which is what VG-R/VG-A ask and what the tiny per-perturbation columns use) and
``<score>.correct_by_draws`` (``T = len(draw_counts)``: ``correct`` from the first ``n`` draws only, nested — the
accuracy-vs-draws curve). The per-draw terms come from the denoiser calls themselves: the ``eps_fn`` handed to
the estimator records each stacked call's ``α``, ``ε̂`` and ``ε`` (recovered from ``z``:
``ε = (z − sqrt(σ(α))·x)/sqrt(σ(−α))``), so the nested scores need no second pass; at ``n_draws`` the recorded ``info`` equals the estimator's
own ``i^o`` / ``i^s`` (a test checks it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.info import pointwise_information_many
from xattr.info.logsnr import TruncatedLogistic
from xattr.utils.seed import make_generator

SCORES = ("info", "info_s", "diffitm")
ESTIMATORS = ("i_o", "i_s")


def check_candidates(candidates, batch: int, name: str) -> list[list[str]]:
    """``candidates``: ``batch`` lists of ``K ≥ 2`` strings each, one ``K`` for the whole batch."""
    if candidates is None:
        raise XattrError(f"{name} needs candidate captions per sample; use a dataset with `candidates` "
                         "(dataset=aro_vg_relation, aro_coco_order, or shapes_captions with "
                         "dataset.candidates=[attribute_swap,relation_swap,relation_flip,word_shuffle])")
    lists = [list(c) for c in candidates]
    if len(lists) != batch or any(not all(isinstance(t, str) for t in c) for c in lists):
        raise XattrError(f"{name}: candidates must be {batch} lists of strings (one per image), got {candidates!r:.80}")
    sizes = sorted({len(c) for c in lists})
    if len(sizes) != 1 or sizes[0] < 2:
        raise XattrError(f"{name}: every image needs the same number (>= 2) of candidate captions, got {sizes}; "
                         "use one dataset (one perturbation list) per run")
    return lists


def relation_outputs(scores: torch.Tensor) -> dict[str, torch.Tensor]:
    """``scores [B,K]`` (true caption at 0) → ``correct [B]``, ``margin [B]``, ``pairwise [B,K−1]`` (float32)."""
    true, others = scores[:, 0], scores[:, 1:]
    best_other = others.max(dim=1).values
    return {"correct": (true > best_other).float(), "margin": (true - best_other).float(),
            "pairwise": (true[:, None] > others).float()}


class _DrawRecorder:
    """An ``eps_fn`` for :func:`pointwise_information_many` that also records, per stacked call, the per-draw terms
    ``o = ‖ε̂_k − ε̂_ref‖²``, ``e = ‖ε − ε̂_k‖²`` (``k = 0..K``, ref last) and the log-SNR ``α`` ``[c,B]``.

    Rows arrive condition-major (``[K+1, c, B]``, the estimator's layout); all blocks share ``z`` and ``α``."""

    def __init__(self, model, x: torch.Tensor, k: int):
        self.model, self.x, self.k = model, x, k
        self.alpha: list[torch.Tensor] = []
        self.o: list[torch.Tensor] = []
        self.e: list[torch.Tensor] = []

    def __call__(self, z: torch.Tensor, logsnr: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        eps_hat = self.model.eps(z, logsnr, c)
        batch = self.x.shape[0]
        blocks = eps_hat.reshape(self.k + 1, -1, batch, *self.x.shape[1:]).double()   # [K+1, c, B, ...]
        z0 = z.reshape(self.k + 1, -1, batch, *self.x.shape[1:])[0].double()          # [c, B, ...]
        alpha = logsnr.reshape(self.k + 1, -1, batch)[0].double()                     # [c, B]
        a = alpha.view(*alpha.shape, *(1,) * (self.x.dim() - 1))
        eps = (z0 - torch.exp(0.5 * F.logsigmoid(a)) * self.x.double()) / torch.exp(0.5 * F.logsigmoid(-a))
        self.alpha.append(alpha)
        self.o.append((blocks[:self.k] - blocks[self.k]).pow(2).flatten(3).sum(-1).permute(1, 2, 0))  # [c,B,K]
        self.e.append((blocks - eps[None]).pow(2).flatten(3).sum(-1).permute(1, 2, 0))              # [c,B,K+1]
        return eps_hat

    def terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``α [N,B]``, ``o [N,B,K]``, ``e [N,B,K+1]`` over all draws, in draw order."""
        return torch.cat(self.alpha), torch.cat(self.o), torch.cat(self.e)


def nested_means(values: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """``values [N,B,K]`` → ``[B,T,K]``: the mean over the first ``n`` draws for each ``n`` of ``counts``."""
    cumulative = values.cumsum(0)
    return torch.stack([cumulative[n - 1] / n for n in counts], dim=1)


class AROScores:
    """``AROScores(scores=("info","info_s","diffitm"), n_draws=100, draw_counts=(1,2,5,10,20,50,100), estimator="i_o",
    loc=1, scale=2, clip=3, chunk_size=256, seed=0)(model, x, maps, target, candidates=[[str]*K]*B)``.

    ``model`` is a :class:`~xattr.models.TextToImageModel` (``maps`` and ``target`` are not used). Returns
    ``{"<score>.correct": [B], "<score>.margin": [B], "<score>.pairwise": [B,K−1],
    "<score>.correct_by_draws": [B,T]}`` for each score (module docstring). The draws come from a generator seeded
    with blake2b(``seed``, :func:`torch.initial_seed`) — the run loop seeds each batch — so a batch's result does not
    depend on what ran before it.
    """

    def __init__(self, scores: Sequence[str] = SCORES, n_draws: int = 100,
                 draw_counts: Sequence[int] = (1, 2, 5, 10, 20, 50, 100), estimator: str = "i_o",
                 loc: float = 1.0, scale: float = 2.0, clip: float = 3.0, chunk_size: int = 256, seed: int = 0):
        scores = [str(s) for s in scores]
        if not scores or any(s not in SCORES for s in scores):
            raise XattrError(f"aro: scores={scores} must be a non-empty list of {', '.join(SCORES)}")
        if estimator not in ESTIMATORS:
            raise XattrError(f"aro: estimator={estimator!r}; use metric.aro.estimator=i_o (the paper's) or i_s")
        if int(n_draws) < 1:
            raise XattrError(f"aro: n_draws={n_draws} must be >= 1 (the paper: 100)")
        counts = sorted({min(int(n), int(n_draws)) for n in draw_counts} | {int(n_draws)})
        if counts[0] < 1:
            raise XattrError(f"aro: draw_counts={list(draw_counts)} must be positive draw counts")
        self.scores, self.n_draws, self.draw_counts, self.estimator = scores, int(n_draws), counts, estimator
        self.sampler = TruncatedLogistic(float(loc), float(scale), float(clip))
        self.chunk_size, self.seed = int(chunk_size), int(seed)

    def _generator(self, device) -> torch.Generator:
        key = f"aro:{self.seed}:{torch.initial_seed()}".encode()
        return make_generator(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % (2**63 - 1),
                              device)

    @torch.no_grad()
    def score_candidates(self, model, x: torch.Tensor, candidates) -> dict[str, torch.Tensor]:
        """Every score of every candidate: ``{"info", "info_s", "diffitm": [B,T,K]}`` at the nested draw counts
        (``T = len(draw_counts)``, the last = ``n_draws``), plus ``"i_o"``, ``"i_s"`` ``[B,K]`` (the estimator's)."""
        lists = check_candidates(candidates, x.shape[0], "aro")
        batch, k = len(lists), len(lists[0])
        latent = model.encode_image(x)
        conds = model.encode_prompt([text for texts in lists for text in texts])
        conds = conds.view(batch, k, *conds.shape[1:])
        ref = model.encode_prompt([""]).expand(batch, *conds.shape[2:])
        recorder = _DrawRecorder(model, latent.float(), k)
        out = pointwise_information_many(recorder, latent, conds, ref, n_draws=self.n_draws, loc=self.sampler.loc,
                                         scale=self.sampler.scale, clip=self.sampler.clip,
                                         generator=self._generator(latent.device), chunk_size=self.chunk_size)
        alpha, o, e = recorder.terms()
        weight = self.sampler.importance_weight(alpha)[..., None]                      # [N,B,1]
        pointwise = {"i_o": 0.5 * weight * o, "i_s": 0.5 * weight * (e[..., k:] - e[..., :k])}   # [N,B,K] each
        return {"info": nested_means(pointwise[self.estimator], self.draw_counts),
                "info_s": nested_means(pointwise["i_s"], self.draw_counts),
                "diffitm": nested_means(-e[..., :k], self.draw_counts), "i_o": out["i_o"], "i_s": out["i_s"]}

    def __call__(self, model, x: torch.Tensor, maps=None, target=None, candidates=None,
                 **ground_truth) -> dict[str, torch.Tensor]:
        scored = self.score_candidates(model, x, candidates)
        result: dict[str, torch.Tensor] = {}
        for name in self.scores:
            by_draws = scored[name]                                                    # [B,T,K]
            final = relation_outputs(by_draws[:, -1])
            true, best_other = by_draws[..., 0], by_draws[..., 1:].max(-1).values
            result.update({f"{name}.{key}": value for key, value in final.items()})
            result[f"{name}.correct_by_draws"] = (true > best_other).float()
        return result


__all__ = ["AROScores", "relation_outputs", "check_candidates", "nested_means", "SCORES"]
