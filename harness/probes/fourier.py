"""Image parameterisation and robustness transforms for feature visualisation (after Lucid/Lucent).

Why a Fourier, colour-decorrelated parameterisation: optimising raw pixels lets high frequencies
dominate (the gradient is largest there), and about a third of the units stayed blank in our prototype.
Scaling each frequency's coefficient by 1/f whitens the gradient so all frequencies move at similar
speed; mixing colours through the square root of a colour-correlation matrix does the same across
channels. A sigmoid keeps pixels in [0, 1], the range the networks were trained on.

Why random jitter/scale each step: an image that only works at one exact alignment is an adversarial
pattern, not a feature; transforms make the optimum robust.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# Lucid's square root of ImageNet's colour correlation (3x3), columns normalised to max norm 1.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_SQRT = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


def fft_image(
    batch: int,
    size: int,
    generator: torch.Generator,
    decay_power: float = 1.0,
    sd: float = 0.01,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, Callable[[], torch.Tensor]]:
    """(the parameter to optimise, a function rendering it as [batch, 3, size, size] images in [0, 1])."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    freqs = (fx * fx + fy * fy).sqrt()  # [size, size // 2 + 1]
    scale = (1.0 / freqs.clamp_min(1.0 / size) ** decay_power).to(device)  # 1/f; DC gets the largest scale
    # Drawn on the CPU generator so the start is the same on every device.
    spectrum = (torch.randn(batch, 3, *freqs.shape, 2, generator=generator) * sd).to(device).requires_grad_(True)
    color = COLOR_SQRT.to(device)

    def render() -> torch.Tensor:
        coeffs = torch.view_as_complex(spectrum) * scale
        image = torch.fft.irfft2(coeffs, s=(size, size), norm="ortho") / 4.0  # Lucid's "magic" 4: sane init range
        image = torch.einsum("bchw,dc->bdhw", image, color)  # decorrelated -> RGB colour space
        return torch.sigmoid(image)

    return spectrum, render


def random_transform(
    images: torch.Tensor, generator: torch.Generator, pad: int = 4, jitter: int = 4, scale: float = 0.1
) -> torch.Tensor:
    """Pad with grey, random-crop by up to ``jitter`` px, rescale by a factor in [1 - scale, 1 + scale], jitter again.

    One draw for the whole batch (every unit sees the same transform), as in Lucid; sizes stay integral.
    """
    if pad:
        images = F.pad(images, (pad,) * 4, value=0.5)
    images = _jitter(images, jitter, generator)
    if scale:
        factor = 1.0 + (torch.rand((), generator=generator).item() * 2 - 1) * scale
        size = max(8, round(images.shape[-1] * factor))
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return _jitter(images, jitter // 2, generator)


def _jitter(images: torch.Tensor, amount: int, generator: torch.Generator) -> torch.Tensor:
    if amount <= 0:
        return images
    dy, dx = torch.randint(0, amount + 1, (2,), generator=generator).tolist()
    h, w = images.shape[-2:]
    return images[..., dy : h - amount + dy, dx : w - amount + dx]
