"""Dataset contract: each sample is a dict ``image [3,H,W] float in [0,1]``, ``label``, ``id``,
and where known ``mask [H,W] bool`` and ``boxes [N,4]`` (x0, y0, x1, y1 in pixels, inclusive-exclusive).
Captioned datasets (text-to-image models) add text fields: ``caption``, ``word`` (the word to explain; its
``mask`` is what the word names) and, for relation tests, ``candidates`` (the true caption first)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from xattr.errors import XattrError


class AttributionDataset(Dataset):
    """Base class: subclasses set ``class_names``, implement ``_raw_len()`` and ``_load(raw_index)``,
    and call ``_select(n_samples, seed, shard, num_shards)`` at the end of ``__init__``.

    ``n_samples`` picks a seeded random subset (sorted, so ids stay in order); ``None`` keeps all.
    ``shard``/``num_shards`` then split that selection into ``num_shards`` contiguous, near-equal parts
    (the first ``len % num_shards`` parts one sample longer) and keep part ``shard``: :func:`shard_bounds`.
    ``shard_offset`` is the position of the shard's first sample in the whole selection (the run loop
    seeds batches by it, so a sample's result does not depend on which shard computed it).
    """

    name: str = "dataset"
    class_names: Sequence[str] = ()
    indices: list[int] = []
    shard: int = 0
    num_shards: int = 1
    shard_offset: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _raw_len(self) -> int:
        raise NotImplementedError

    def _load(self, raw_index: int) -> dict:
        raise NotImplementedError

    def _select(self, n_samples: int | None, seed: int = 0, shard: int = 0, num_shards: int = 1) -> None:
        check_shard(shard, num_shards)
        total = self._raw_len()
        if n_samples is not None and n_samples <= 0:
            raise XattrError(f"dataset.n_samples={n_samples} selects nothing; use a positive number or null")
        if n_samples is None or n_samples >= total:
            selected = list(range(total))
        else:
            generator = torch.Generator().manual_seed(int(seed))
            selected = sorted(torch.randperm(total, generator=generator)[:n_samples].tolist())
        start, stop = shard_bounds(len(selected), shard, num_shards)
        if num_shards > 1 and start == stop:
            raise XattrError(f"dataset.num_shards={num_shards} is more than the {len(selected)} selected samples: "
                             f"shard {shard} would be empty; use at most {max(len(selected), 1)} shards")
        self.shard, self.num_shards, self.shard_offset = int(shard), int(num_shards), start
        self.indices = selected[start:stop]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.indices):
            raise IndexError(index)
        return self._load(self.indices[index])

    def check_not_empty(self, where: str) -> None:
        if len(self) == 0:
            raise XattrError(f"dataset {self.name} at {where} is empty; point paths.data_dir at a folder with images")


def check_shard(shard: int, num_shards: int) -> None:
    """One-line error for a shard that does not exist (the config schema refuses these first)."""
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise XattrError(f"dataset.num_shards={num_shards} must be a whole number >= 1 (1: no sharding)")
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < num_shards:
        raise XattrError(f"dataset.shard={shard} must be in 0..{num_shards - 1} for dataset.num_shards={num_shards}")


def shard_bounds(total: int, shard: int, num_shards: int) -> tuple[int, int]:
    """``(start, stop)`` of part ``shard`` when ``total`` samples are split into ``num_shards`` contiguous
    near-equal parts (sizes differ by at most one; the first ``total % num_shards`` parts are longer)."""
    size, extra = divmod(total, num_shards)
    start = shard * size + min(shard, extra)
    return start, start + size + (1 if shard < extra else 0)


def collate(samples: list[dict]) -> dict:
    """Stack images/labels/masks; keep ``id`` and ``boxes`` as lists (boxes vary in count), and every other
    text field all samples carry (a ``str`` such as ``caption``/``word``, or a list of ``str`` such as
    ``candidates``) as a list of them, one entry per sample."""
    batch: dict = {
        "image": torch.stack([s["image"] for s in samples]),
        "label": torch.as_tensor([int(s["label"]) for s in samples], dtype=torch.long),
        "id": [str(s["id"]) for s in samples],
    }
    if all("mask" in s for s in samples):
        batch["mask"] = torch.stack([torch.as_tensor(s["mask"], dtype=torch.bool) for s in samples])
    if all("boxes" in s for s in samples):
        batch["boxes"] = [torch.as_tensor(s["boxes"], dtype=torch.float32).reshape(-1, 4) for s in samples]
    for key in sorted(samples[0].keys() - batch.keys()):
        values = [s.get(key) for s in samples]
        if all(_is_text(v) for v in values):
            batch[key] = [v if isinstance(v, str) else list(v) for v in values]
    return batch


def _is_text(value) -> bool:
    return isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value))


def boxes_to_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Union of ``boxes [N,4]`` (x0,y0,x1,y1) as a ``[H,W]`` bool mask."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.round().long().tolist():
        mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return mask


def mask_to_box(mask: torch.Tensor) -> torch.Tensor:
    """Tight box ``[1,4]`` (x0,y0,x1,y1, exclusive end) around a ``[H,W]`` bool mask."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() == 0:
        return torch.zeros(0, 4)
    return torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
