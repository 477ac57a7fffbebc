"""InputIBA — Fine-grained attribution with an input bottleneck (Zhang et al., NeurIPS 2021).

Reference code: CAMP-eXplain-AI/InputIBA (``input_iba/models/attributors/base_attributor.py``
``make_attribution``; ``bottlenecks/vision_feat_iba.py``, ``bottlenecks/vision_input_iba.py``,
``base_input_iba.py`` ``kl_div``; ``gans/vision_gan.py``, ``vision_generator.py``,
``vision_discriminator.py``; ``configs/vgg_imagenet.py``). Three stages per image:

1. **Feature IBA** at the bottleneck layer (as ``xattr.methods.iba.IBA``; the reference attributor
   sets ``sigma=None`` before estimation, so this stage has no smoothing: ``feat_sigma=0``).
2. **Generative prior (WGAN)**: the generator is an input-sized mask ``m = sigmoid(p)`` (``p``
   initialised with the upsampled feature-IBA saliency map, bits per pixel) with learnable noise
   mean/std per colour channel; its output is the bottleneck feature of ``m·x + (1-m)·(std·z + mean)``.
   The critic (3 conv + 3 linear layers) compares it with "real" samples ``c·r + (1-c)·n`` where ``c``
   is the feature-IBA capacity (the reference passes ``capacity()`` as the mask), ``r`` the clean
   feature and ``n`` Gaussian noise whose mean ~ U(-2,2) and std ~ U(0,5) are fixed per sub-dataset.
   RMSprop (critic lr 5e-5; generator groups mean 0.1, std 0.05, mask 0.003 as hard-coded in the
   reference), weight clipping, a generator step every ``critic_iter``-th batch.
3. **Input IBA**: ``z = λ x + (1-λ) ε``, ``ε ~ N(0, 1)`` in the model's normalised input space,
   ``λ = smooth(sigmoid(α))``, with the KL taken against the GAN mask's distribution;
   ``β_input = 20``, 60 Adam steps at lr 1, 10 draws per step.

The map is ``sigmoid(α)`` averaged over colour channels (the reference averages over the batch and
channel axes of ``α``), ``[B,1,H,W]`` in ``[0,1]``.

Batched: all three stages run for B images at once. Each image has its own parameters, its own
critic (grouped convolutions / batched matrix products hold B independent critics, BatchNorm
statistics stay per image), its own noise generators seeded by its content, and losses are summed
over images, so batching does not couple images.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from xattr.errors import XattrError
from xattr.info.bottleneck import LAMBDA_EPS, SpatialGaussianSmoothing, standard_normal
from xattr.info.feature_statistics import resolve_layer
from xattr.methods._model_space import normalizer_and_net
from xattr.methods.base import AttributionMethod, RunContext
from xattr.methods.iba import IBA, capacity_to_saliency
from xattr.utils.hooks import forward_hook, frozen
from xattr.utils.seed import image_seeds, make_generator


class _StopForward(Exception):
    pass


def kl_capacity_given_mask(x: torch.Tensor, mask: torch.Tensor, lam: torch.Tensor, mean: torch.Tensor | float,
                           std: torch.Tensor | float) -> torch.Tensor:
    """InputIBA's input KL (``BaseInputIBA.kl_div``), elementwise, nats.

    Written as in the reference with ``r' = (1-m)(x-μ) / ((1-mλ)σ)`` and ``var = (1-λ)² / (1-mλ)²``:
    ``-½(1 + log var - (λ r')² - var)``. This equals ``KL(N(λx + (1-λ)μ, (1-λ)²σ²) ||
    N(mλ x + (1-mλ)μ, (1-mλ)²σ²))``: the prior is the restriction with damping ``m·λ``, i.e. the GAN
    mask ``m`` sets how much of ``x`` the reference distribution already contains.
    """
    lam = lam.clamp(max=1 - LAMBDA_EPS)
    r_norm = (x - mean + mask * (mean - x)) / ((1 - mask * lam) * std)
    var_z = (1 - lam) ** 2 / (1 - mask * lam) ** 2
    mu_z = r_norm * lam
    return -0.5 * (1 + torch.log(var_z) - mu_z**2 - var_z)


def _uniform_(tensor: torch.Tensor, bound: float, generator: torch.Generator) -> None:
    with torch.no_grad():
        values = torch.rand(tensor.shape, generator=generator, device=generator.device, dtype=tensor.dtype)
        tensor.copy_(((values * 2 - 1) * bound).to(tensor.device))


class _Critics(nn.Module):
    """G independent copies of InputIBA's ``VisionDiscriminator`` evaluated in one call.

    Input ``[n, G·C, h, w]`` (image g's features in channels ``g·C:(g+1)·C``), output ``[G, n]``.
    Convolutions are grouped (one group per image), BatchNorm is per channel (so per image, in
    training mode as in the reference), linear layers are batched matrix products. Every slice is
    initialised like PyTorch's default layers (uniform ±1/sqrt(fan_in)) from its image's generator.
    """

    def __init__(self, groups: int, channels: int, size: tuple[int, int], generators: list[torch.Generator],
                 device):
        super().__init__()
        g, c = groups, channels
        self.groups, self.channels = g, c
        self.conv1 = nn.Conv2d(g * c, g * 2 * c, 4, stride=2, padding=1, groups=g)
        self.bn1 = nn.BatchNorm2d(g * 2 * c)
        self.conv2 = nn.Conv2d(g * 2 * c, g * 4 * c, 4, stride=2, padding=1, groups=g)
        self.bn2 = nn.BatchNorm2d(g * 4 * c)
        self.conv3 = nn.Conv2d(g * 4 * c, g * c, 3, stride=1, padding=1, groups=g)
        self.bn3 = nn.BatchNorm2d(g * c)
        h, w = size
        for _ in range(2):  # conv arithmetic of the two stride-2 convolutions
            h, w = (h + 2 - 4) // 2 + 1, (w + 2 - 4) // 2 + 1
        if h < 1 or w < 1:
            raise XattrError(f"InputIBA critic needs a feature map of at least 2x2, got {size}; pick an earlier layer")
        flat = c * h * w
        self.w1 = nn.Parameter(torch.empty(g, flat, 512))
        self.b1 = nn.Parameter(torch.empty(g, 1, 512))
        self.w2 = nn.Parameter(torch.empty(g, 512, 256))
        self.b2 = nn.Parameter(torch.empty(g, 1, 256))
        self.w3 = nn.Parameter(torch.empty(g, 256, 1))
        self.b3 = nn.Parameter(torch.empty(g, 1, 1))
        for index, gen in enumerate(generators):
            for conv in (self.conv1, self.conv2, self.conv3):
                out = conv.out_channels // g
                fan_in = conv.weight.shape[1] * conv.weight.shape[2] * conv.weight.shape[3]
                bound = 1 / math.sqrt(fan_in)
                _uniform_(conv.weight[index * out:(index + 1) * out], bound, gen)
                _uniform_(conv.bias[index * out:(index + 1) * out], bound, gen)
            for weight, bias in ((self.w1, self.b1), (self.w2, self.b2), (self.w3, self.b3)):
                bound = 1 / math.sqrt(weight.shape[1])
                _uniform_(weight[index], bound, gen)
                _uniform_(bias[index], bound, gen)
        self.to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.bn1(self.conv1(x)), 0.2)
        out = F.leaky_relu(self.bn2(self.conv2(out)), 0.2)
        out = F.leaky_relu(self.bn3(self.conv3(out)), 0.2)
        n = out.shape[0]
        out = out.reshape(n, self.groups, -1).transpose(0, 1)  # [G, n, C*h*w]
        out = F.leaky_relu(torch.baddbmm(self.b1, out, self.w1), 0.2)
        out = F.leaky_relu(torch.baddbmm(self.b2, out, self.w2), 0.2)
        return torch.baddbmm(self.b3, out, self.w3).squeeze(-1)  # [G, n]


class InputIBA(AttributionMethod):
    """InputIBA. Output ``[B,1,H,W]``: mean over colour channels of the input mask ``sigmoid(α)``.

    Args (defaults: the DiffIB paper's settings and the reference ``configs/vgg_imagenet.py``; see the YAML):
        layer: bottleneck layer (``None``: the model's ``bottleneck`` role).
        beta_feat, feat_steps, feat_lr, feat_batch_size, feat_sigma, min_std: feature IBA.
        n_samples: training images for the feature statistics (reference config: 1,000).
        gan_dataset_size, gan_sub_dataset_size, gan_lr, gan_batch_size, gan_weight_clip, gan_epochs,
        gan_critic_iter: WGAN; gan_lr is the critic's RMSprop lr; the generator's learning rates
        (mean, std, mask) are ``gan_generator_lrs``.
        beta_input, input_steps, input_lr, input_batch_size, input_sigma, initial_alpha: input IBA.
        seed: mixed with each image's content for all its random draws.
    """

    supports_transformers = False

    def __init__(self, model: nn.Module, layer: str | None = None,
                 beta_feat: float = 10.0, feat_steps: int = 10, feat_lr: float = 1.0, feat_batch_size: int = 10,
                 feat_sigma: float = 0.0, min_std: float = 0.01, active_neurons_threshold: float = 0.01,
                 n_samples: int = 1000, stats_batch_size: int = 32,
                 gan_dataset_size: int = 200, gan_sub_dataset_size: int = 20, gan_lr: float = 5e-5,
                 gan_batch_size: int = 32, gan_weight_clip: float = 0.01, gan_epochs: int = 20,
                 gan_critic_iter: int = 5, gan_generator_lrs: tuple[float, float, float] = (0.1, 0.05, 0.003),
                 beta_input: float = 20.0, input_steps: int = 60, input_lr: float = 1.0,
                 input_batch_size: int = 10, input_sigma: float = 1.0, initial_alpha: float = 5.0,
                 seed: int = 0, progress: bool = True):
        super().__init__(model)
        self.feature_iba = IBA(model, layer=layer, beta=beta_feat, optimization_steps=feat_steps, lr=feat_lr,
                               batch_size=feat_batch_size, initial_alpha=initial_alpha, sigma=feat_sigma,
                               min_std=min_std, active_neurons_threshold=active_neurons_threshold,
                               n_samples=n_samples, stats_batch_size=stats_batch_size, seed=seed, progress=progress)
        self.layer = self.feature_iba.layer
        if gan_sub_dataset_size < 1 or gan_dataset_size < gan_sub_dataset_size:
            raise XattrError(f"gan_dataset_size={gan_dataset_size} must be >= gan_sub_dataset_size="
                             f"{gan_sub_dataset_size} >= 1")
        self.gan_dataset_size = int(gan_dataset_size)
        self.gan_sub_dataset_size = int(gan_sub_dataset_size)
        self.gan_lr = float(gan_lr)
        self.gan_batch_size = int(gan_batch_size)
        self.gan_weight_clip = float(gan_weight_clip)
        self.gan_epochs = int(gan_epochs)
        self.gan_critic_iter = int(gan_critic_iter)
        self.gan_generator_lrs = tuple(float(v) for v in gan_generator_lrs)
        self.beta_input = float(beta_input)
        self.input_steps = int(input_steps)
        self.input_lr = float(input_lr)
        self.input_batch_size = int(input_batch_size)
        self.input_sigma = float(input_sigma)
        self.initial_alpha = float(initial_alpha)
        self.seed = int(seed)
        self.progress = progress
        #: intermediate results of the last call (feature capacity, GAN mask)
        self.buffers: dict[str, torch.Tensor] = {}

    def prepare(self, context: RunContext) -> None:
        self.feature_iba.prepare(context)

    def set_feature_statistics(self, stats: dict) -> None:
        self.feature_iba.set_feature_statistics(stats)

    # -- stage 2: generative prior ----------------------------------------------------------------
    def _features(self, net: nn.Module, x_norm: torch.Tensor) -> torch.Tensor:
        """Bottleneck features of normalised images (forward stopped right after the layer)."""
        layer = resolve_layer(self.model, self.layer)
        found: dict[str, torch.Tensor] = {}

        def grab(_module, _inputs, output):
            found["r"] = output
            raise _StopForward

        with forward_hook(layer, grab), contextlib.suppress(_StopForward):
            net(x_norm)
        return found["r"]

    def _train_gan(self, net, x_norm: torch.Tensor, capacity: torch.Tensor, features: torch.Tensor,
                   generators: list[torch.Generator]) -> torch.Tensor:
        b, c, h, w = features.shape
        device = x_norm.device
        n_sub = self.gan_dataset_size // self.gan_sub_dataset_size
        sub_std = torch.stack([torch.rand(n_sub, generator=g, device=g.device).to(device) * 5 for g in generators])
        sub_mean = torch.stack([(torch.rand(n_sub, generator=g, device=g.device).to(device) * 4 - 2)
                                for g in generators])
        init = capacity_to_saliency(capacity, tuple(x_norm.shape[-2:]))  # [B,1,H,W] bits per pixel
        mask_param = nn.Parameter(init.expand(-1, x_norm.shape[1], -1, -1).clone())
        noise_mean = nn.Parameter(torch.zeros(b, x_norm.shape[1], 1, 1, device=device))
        noise_std = nn.Parameter(torch.ones(b, x_norm.shape[1], 1, 1, device=device))
        critics = _Critics(b, c, (h, w), generators, device).train()
        lr_mean, lr_std, lr_mask = self.gan_generator_lrs
        opt_g = torch.optim.RMSprop([{"params": [noise_mean], "lr": lr_mean}, {"params": [noise_std], "lr": lr_std},
                                     {"params": [mask_param], "lr": lr_mask}])
        opt_d = torch.optim.RMSprop(critics.parameters(), lr=self.gan_lr)

        def generate(z: torch.Tensor) -> torch.Tensor:  # z [B, n, 3, H, W] -> [n, B*C, h, w]
            n = z.shape[1]
            mask = torch.sigmoid(mask_param)[:, None]
            noise = noise_std[:, None] * z + noise_mean[:, None]
            masked = mask * x_norm[:, None] + (1 - mask) * noise
            feats = self._features(net, masked.reshape((b * n,) + tuple(x_norm.shape[1:])))
            return feats.reshape(b, n, c, h, w).transpose(0, 1).reshape(n, b * c, h, w)

        from tqdm.auto import tqdm

        for _epoch in tqdm(range(self.gan_epochs), desc="InputIBA GAN", leave=False, disable=not self.progress or None):
            orders = [torch.randperm(self.gan_dataset_size, generator=g, device=g.device).to(device)
                      for g in generators]
            for i, start in enumerate(range(0, self.gan_dataset_size, self.gan_batch_size)):
                idx = torch.stack([o[start:start + self.gan_batch_size] for o in orders])  # [B, n]
                n = idx.shape[1]
                sub = idx // self.gan_sub_dataset_size
                noise = standard_normal((b * n, c, h, w), generators, device=device).view(b, n, c, h, w)
                noise = (noise * torch.gather(sub_std, 1, sub)[..., None, None, None]
                         + torch.gather(sub_mean, 1, sub)[..., None, None, None])
                real = capacity[:, None] * features[:, None] + (1 - capacity[:, None]) * noise
                real = real.transpose(0, 1).reshape(n, b * c, h, w)
                z = standard_normal((b * n,) + tuple(x_norm.shape[1:]), generators, device=device)
                z = z.view((b, n) + tuple(x_norm.shape[1:]))

                opt_d.zero_grad()
                with torch.no_grad():
                    fake = generate(z)
                loss_d = (-critics(real).mean(1) + critics(fake).mean(1)).sum()
                loss_d.backward()
                opt_d.step()
                with torch.no_grad():
                    for p in critics.parameters():
                        p.clamp_(-self.gan_weight_clip, self.gan_weight_clip)

                if i % self.gan_critic_iter == 0:
                    opt_g.zero_grad()
                    loss_g = (-critics(generate(z)).mean(1)).sum()
                    loss_g.backward()
                    opt_g.step()
        return torch.sigmoid(mask_param).detach()

    # -- stage 3: input bottleneck --------------------------------------------------------------
    def _input_bottleneck(self, net, x_norm: torch.Tensor, target: torch.Tensor, gan_mask: torch.Tensor,
                          generators: list[torch.Generator]) -> torch.Tensor:
        b, draws = x_norm.shape[0], self.input_batch_size
        smooth = SpatialGaussianSmoothing(self.input_sigma).to(x_norm.device)
        alpha = torch.full(x_norm.shape, self.initial_alpha, device=x_norm.device, requires_grad=True)
        optimizer = torch.optim.Adam([alpha], lr=self.input_lr)
        x_rep = x_norm.repeat_interleave(draws, 0)
        target_rep = target.repeat_interleave(draws)
        from tqdm.auto import tqdm

        for _ in tqdm(range(self.input_steps), desc="InputIBA input", leave=False, disable=not self.progress or None):
            optimizer.zero_grad()
            lam = smooth(torch.sigmoid(alpha))
            capacity = kl_capacity_given_mask(x_norm, gan_mask, lam, 0.0, 1.0)  # same for every draw
            eps = standard_normal(x_rep.shape, generators, device=x_norm.device)
            lam_rep = lam.repeat_interleave(draws, 0)
            z = lam_rep * x_rep + (1 - lam_rep) * eps
            model_loss = F.cross_entropy(net(z), target_rep, reduction="none").view(b, draws).mean(1)
            loss = (model_loss + self.beta_input * capacity.flatten(1).mean(1)).sum()
            loss.backward()
            optimizer.step()
        return torch.sigmoid(alpha).detach()

    def _attribute(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        capacity = self.feature_iba.fit_capacity(x, target)  # [B,C,h,w] nats
        normalize, net = normalizer_and_net(self.model)
        gan_generators = [make_generator(s, x.device) for s in image_seeds(x, self.seed + 1)]
        input_generators = [make_generator(s, x.device) for s in image_seeds(x, self.seed + 2)]
        with torch.enable_grad(), frozen(self.model):
            x_norm = normalize(x).detach()
            with torch.no_grad():
                features = self._features(net, x_norm)
            gan_mask = self._train_gan(net, x_norm, capacity, features, gan_generators)
            input_mask = self._input_bottleneck(net, x_norm, target, gan_mask, input_generators)
        self.buffers = {"feature_capacity": capacity, "gan_mask": gan_mask, "input_mask": input_mask}
        return input_mask.mean(dim=1, keepdim=True)
