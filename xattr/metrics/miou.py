"""Word localisation mIoU (Interpretable Diffusion via Information Decomposition, Sec. 3.2.2 / Table 3).

Each map ``[B,1,H,W]`` is min-max normalised per image, thresholded at every ``t`` of ``thresholds``
(paper: ``linspace(0.1, 0.5, 50)``) and compared with the word's mask by the Jaccard index. The metric
returns the per-image IoU curve over the thresholds; choosing one threshold is the report's job: the
paper takes the best single threshold over the whole dataset (an oracle), a fair protocol chooses it on a
held-out split. ``threshold`` (optional) adds the IoU at one fixed threshold as a per-image value.
Maps of another size than the mask are resized bilinearly first (the paper: latent 64x64 → 512x512).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xattr.errors import XattrError

PAPER_THRESHOLDS = (0.1, 0.5, 50)  # torch.linspace(0.1, 0.5, 50), the authors' evaluation code


def normalise_min_max(maps: torch.Tensor) -> torch.Tensor:
    """Per-image ``(m - min) / (max - min)`` of ``[B,1,H,W]`` maps; a constant map becomes all zeros."""
    flat = maps.flatten(1)
    low = flat.min(1).values.view(-1, 1, 1, 1)
    span = (flat.max(1).values.view(-1, 1, 1, 1) - low)
    return torch.where(span > 0, (maps - low) / span.clamp(min=1e-30), torch.zeros_like(maps))


def iou_curve(maps: torch.Tensor, mask: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Jaccard index ``[B,T]`` of ``normalise_min_max(maps) > t`` against ``mask [B,H,W]`` for each ``t``.
    An empty union (empty mask, empty prediction) counts as IoU 1."""
    unit = normalise_min_max(maps)[:, 0]  # [B,H,W]
    predicted = unit[:, None] > thresholds.view(1, -1, 1, 1).to(unit)  # [B,T,H,W]
    truth = mask[:, None].bool()
    intersection = (predicted & truth).flatten(2).sum(2).float()
    union = (predicted | truth).flatten(2).sum(2).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


class MIoU:
    """``MIoU(low=0.1, high=0.5, n=50, threshold=None)(model, x, maps, target, mask=[B,H,W])``.

    Returns ``{'curve': [B,T]}`` (IoU per threshold of ``linspace(low, high, n)``), plus ``{'iou': [B]}`` at
    ``threshold`` when it is set.
    """

    def __init__(self, low: float = PAPER_THRESHOLDS[0], high: float = PAPER_THRESHOLDS[1],
                 n: int = PAPER_THRESHOLDS[2], threshold: float | None = None):
        if not 0.0 <= low <= high <= 1.0 or int(n) < 1:
            raise XattrError(f"miou: thresholds linspace({low}, {high}, {n}) must lie in [0,1] with low <= high "
                             "and n >= 1; e.g. metric.miou.low=0.1 metric.miou.high=0.5 metric.miou.n=50")
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise XattrError(f"miou: threshold={threshold} must lie in [0,1] (maps are min-max normalised)")
        self.thresholds = torch.linspace(float(low), float(high), int(n))
        self.threshold = None if threshold is None else float(threshold)

    def __call__(self, model, x: torch.Tensor, maps: torch.Tensor, target=None, mask=None,
                 **ground_truth) -> dict[str, torch.Tensor]:
        mask = _check_mask(mask, maps, "miou")
        maps = _to_mask_size(maps, mask)
        out = {"curve": iou_curve(maps, mask, self.thresholds)}
        if self.threshold is not None:
            out["iou"] = iou_curve(maps, mask, torch.tensor([self.threshold]))[:, 0]
        return out


def _check_mask(mask, maps: torch.Tensor, name: str) -> torch.Tensor:
    if mask is None:
        raise XattrError(f"{name} needs the word's ground-truth mask; use a dataset whose samples carry `mask` "
                         f"(dataset=shapes_captions, coco_it) or drop {name} from metric")
    mask = torch.as_tensor(mask).to(device=maps.device).bool()
    if maps.dim() != 4 or maps.shape[1] != 1 or mask.dim() != 3 or mask.shape[0] != maps.shape[0]:
        raise XattrError(f"{name}: maps {tuple(maps.shape)} and mask {tuple(mask.shape)} must be [B,1,h,w] and "
                         "[B,H,W] (a text-image method's per-pixel map and the word's mask)")
    return mask


def _to_mask_size(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if maps.shape[-2:] == mask.shape[-2:]:
        return maps.float()
    return F.interpolate(maps.float(), size=mask.shape[-2:], mode="bilinear", align_corners=False)
