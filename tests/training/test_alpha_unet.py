"""AlphaUNetTrainer.fit (DiffIB Algorithm 1 over a training split, amortized): the objective's beta term."""

from __future__ import annotations

import torch
from box_helpers import BoxReader, box_images, box_mask

from xattr.training.alpha_unet import AlphaUNetTrainer

MEAN, STD = [0.449], [0.226]   # 1-channel images in the space of ImageNet's mean constants


def _fit(beta: float, images: torch.Tensor) -> torch.Tensor:
    """alpha of the amortized U-Net trained for a classifier that reads only the box (60 steps, EMA off)."""
    trainer = AlphaUNetTrainer.from_conf(steps=60, batch_size=4, lr=0.01, beta=beta, width=4, depth=2,
                                         ema_decay=0.0, train_size=None, save_every=10**6, mean=MEAN, std=STD)
    data = [{"image": image, "label": 0} for image in images]
    net = trainer.fit(BoxReader(), data, seed=0, progress=False)
    with torch.no_grad():
        return net((images - MEAN[0]) / STD[0])


def test_amortized_alpha_unet_trades_information_for_beta():
    """CE + beta * mean(alpha): with a small beta the U-Net learns to keep alpha in the box the classifier reads
    and to drop it elsewhere (alpha_init is 5); a larger beta (same seed, same batches) lowers alpha in the box
    too. Measured on 8 seeds: alpha outside <= -9.7, box - outside >= 7.6, box lower at the larger beta by >= 3."""
    images = box_images(16)
    inside = box_mask().expand_as(images)
    small, large = _fit(0.03, images), _fit(1.0, images)
    alpha_in, alpha_out = small[inside].mean().item(), small[~inside].mean().item()
    assert alpha_out < -6 and alpha_in > alpha_out + 3, (alpha_in, alpha_out)
    assert large[inside].mean().item() < alpha_in - 1, (alpha_in, large[inside].mean().item())
    assert large.mean().item() < small.mean().item()
