"""Strong photometric view of a batch, on its device: colour jitter, grayscale, blur, noise.

The strong view of cross pseudo supervision (and FixMatch) is built inside the training
step from the weakly augmented batch, so both views stay pixel-aligned and no second copy
travels through the data pipeline. Every sample draws its own parameters from a
``numpy.random.RandomState`` (noise from a ``torch.Generator`` seeded by it), so a step is
reproducible from its seed. Defaults (those of :class:`~medfound.dac.config.AugmentConfig`) follow the
FixMatch / UniMatch strong augmentation (colour jitter 0.5/0.5/0.5 with p 0.8, grayscale
p 0.2, Gaussian blur sigma 0.1-2 with p 0.5), plus Gaussian noise.

Images enter and leave in the network's normalised space; ``mean`` / ``std`` map them to
[0, 1] for the augmentation and back.

Example
-------
>>> import numpy as np, torch
>>> from medfound.dac.strong_view import StrongAugment
>>> x = torch.rand(4, 3, 32, 32)
>>> y = StrongAugment()(x, np.random.RandomState(0))
>>> y.shape == x.shape and bool((y >= 0).all() and (y <= 1).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medfound.dac.config import AugmentConfig, default
from medfound.errors import ConfigError
from medfound.transforms.intensity import gaussian_blur, luma
from medfound.utils import check_float, check_pair, check_probability

__all__ = ["StrongAugment"]


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma of RGB (ITU-R BT.601) or the channel mean for other channel counts, ``(B, 1, H, W)``."""
    return luma(x, dim=1, keepdim=True) if x.shape[1] == 3 else x.mean(1, keepdim=True)


class StrongAugment:
    """Random per-sample colour jitter, grayscale, Gaussian blur and Gaussian noise of a batch.

    Parameters
    ----------
    jitter_prob : probability of colour jitter (brightness, contrast, saturation, in this order).
    brightness, contrast, saturation : factors drawn from ``[max(0, 1 - v), 1 + v]``.
    grayscale_prob : probability of replacing an RGB image by its luma.
    blur_prob, blur_sigma : probability and ``(min, max)`` sigma (pixels) of the Gaussian blur.
    noise_prob, noise_std : probability and maximum standard deviation (intensities in [0, 1])
        of additive Gaussian noise; each sample draws its std from ``[0, noise_std]``.
    mean, std : per-channel normalisation of the inputs (``None``: inputs are in [0, 1]).
    """

    def __init__(
        self,
        jitter_prob: float = default(AugmentConfig, "jitter_prob"),
        brightness: float = default(AugmentConfig, "brightness"),
        contrast: float = default(AugmentConfig, "contrast"),
        saturation: float = default(AugmentConfig, "saturation"),
        grayscale_prob: float = default(AugmentConfig, "grayscale_prob"),
        blur_prob: float = default(AugmentConfig, "blur_prob"),
        blur_sigma: Sequence[float] = tuple(default(AugmentConfig, "blur_sigma")),
        noise_prob: float = default(AugmentConfig, "noise_prob"),
        noise_std: float = default(AugmentConfig, "noise_std"),
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if (mean is None) != (std is None):
            raise ConfigError("mean and std must be both given or both None")
        self.jitter_prob = check_probability(jitter_prob, "jitter_prob")
        self.grayscale_prob = check_probability(grayscale_prob, "grayscale_prob")
        self.brightness = check_float(brightness, "brightness", low=0.0)
        self.contrast = check_float(contrast, "contrast", low=0.0)
        self.saturation = check_float(saturation, "saturation", low=0.0)
        self.blur_prob = check_probability(blur_prob, "blur_prob")
        self.blur_sigma = check_pair(blur_sigma, "blur_sigma", low=0.0)
        self.noise_prob = check_probability(noise_prob, "noise_prob")
        self.noise_std = check_float(noise_std, "noise_std", low=0.0)
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]

    def _factors(self, rng: np.random.RandomState, n: int, amount: float, active: np.ndarray) -> np.ndarray:
        f = rng.uniform(max(0.0, 1.0 - amount), 1.0 + amount, size=n)
        return np.where(active, f, 1.0)

    def __call__(self, x: torch.Tensor, rng: np.random.RandomState) -> torch.Tensor:
        b, c = x.shape[:2]
        dev, dt = x.device, x.dtype
        if self.mean is not None:
            if len(self.mean) != c:
                raise ConfigError(f"StrongAugment has {len(self.mean)} normalisation values for {c} channels")
            mean = torch.tensor(self.mean, device=dev, dtype=dt).view(1, c, 1, 1)
            std = torch.tensor(self.std, device=dev, dtype=dt).view(1, c, 1, 1)
            x = x * std + mean
        # draw every parameter first, in a fixed order, so the stream does not depend on the data
        jitter = rng.rand(b) < self.jitter_prob
        bright = self._factors(rng, b, self.brightness, jitter)
        contr = self._factors(rng, b, self.contrast, jitter)
        satur = self._factors(rng, b, self.saturation, jitter)
        gray = (rng.rand(b) < self.grayscale_prob) & (c == 3)
        blur = rng.rand(b) < self.blur_prob
        sigma = np.where(blur, rng.uniform(*self.blur_sigma, size=b), 0.0)
        noisy = rng.rand(b) < self.noise_prob
        noise_std = np.where(noisy, rng.uniform(0.0, self.noise_std, size=b), 0.0)
        noise_seed = int(rng.randint(0, 2**31 - 1))

        def col(v: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(v, device=dev, dtype=dt).view(b, 1, 1, 1)

        x = (x * col(bright)).clamp(0, 1)
        m = _gray(x).mean(dim=(2, 3), keepdim=True)
        x = ((x - m) * col(contr) + m).clamp(0, 1)
        if c == 3:
            g = _gray(x)
            x = ((x - g) * col(satur) + g).clamp(0, 1)
            x = torch.where(col(gray.astype(np.float32)) > 0, _gray(x).expand_as(x), x)
        x = gaussian_blur(x, torch.as_tensor(sigma, dtype=torch.float32))  # one sigma per sample, 0: none
        if noisy.any():
            gen = torch.Generator(device=dev).manual_seed(noise_seed)
            x = x + torch.randn(x.shape, generator=gen, device=dev, dtype=dt) * col(noise_std)
        x = x.clamp(0, 1)
        if self.mean is not None:
            x = (x - mean) / std
        return x
