"""Synthetic multi-centre colonoscopy frames with polyp masks (PraNet layout).

Layout written (the layout PraNet distributes the public polyp sets in)::

    polyp/
      Kvasir/images/0000.png            RGB frame
      Kvasir/masks/0000.png             grayscale mask: 255 polyp, 0 background
      CVC-ClinicDB/ ... CVC-ColonDB/ ... ETIS-LaribPolypDB/
      manifest.json, README.md

Frames show folded mucosa, a dark lumen, 0-2 polyps (irregular domes with their own
tint and texture) and specular highlights. Each centre has its own frame size, colour
balance, gamma/contrast, blur, noise, vignetting, black border width, JPEG quality and
amount of specular highlights; polyp sizes follow one distribution everywhere.

Example
-------
>>> import tempfile
>>> from medfound.data.synthetic.polyp import write_polyp_demo
>>> manifest = write_polyp_demo(tempfile.mkdtemp(), size="small", seed=0)
>>> sorted(manifest["domains"])
['CVC-ClinicDB', 'CVC-ColonDB', 'ETIS-LaribPolypDB', 'Kvasir']
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medfound.data.synthetic.common import (
    camera_response,
    check_size,
    ellipse_distance,
    grid,
    jpeg_roundtrip,
    save_png,
    smooth_noise,
    soft_inside,
    to_uint8,
    write_dataset_docs,
)
from medfound.utils import make_rng

__all__ = ["PolypDomain", "POLYP_DOMAINS", "POLYP_COUNTS", "render_polyp", "write_polyp_demo"]


@dataclass(frozen=True)
class PolypDomain:
    """Acquisition profile of one synthetic endoscopy centre."""

    name: str
    size: dict[str, tuple[int, int]]  # (width, height) per size preset
    channel_gain: tuple[float, float, float]
    gamma: float
    contrast: float
    blur_sigma: float  # pixels at the "small" size
    noise_std: float
    falloff: float
    border: float  # width of the black frame border, relative to the short side
    jpeg_quality: int
    highlights: tuple[int, int]  # range of specular highlight count


POLYP_DOMAINS: tuple[PolypDomain, ...] = (
    PolypDomain("Kvasir", {"small": (320, 272), "medium": (640, 544)}, (1.00, 1.00, 1.00), 1.00, 1.00,
                0.6, 0.010, 0.35, 0.03, 90, (4, 10)),
    PolypDomain("CVC-ClinicDB", {"small": (256, 192), "medium": (384, 288)}, (1.08, 0.88, 0.84), 1.20, 0.90,
                1.0, 0.020, 0.55, 0.08, 72, (6, 14)),
    PolypDomain("CVC-ColonDB", {"small": (288, 252), "medium": (574, 500)}, (0.90, 0.96, 1.06), 0.90, 0.80,
                1.6, 0.015, 0.40, 0.06, 80, (2, 6)),
    PolypDomain("ETIS-LaribPolypDB", {"small": (306, 242), "medium": (612, 484)}, (1.04, 1.00, 0.94), 0.85, 1.20,
                0.5, 0.030, 0.30, 0.10, 92, (8, 18)),
)

#: frames per domain and size preset
POLYP_COUNTS: dict[str, int] = {"small": 24, "medium": 96}

_MUCOSA_RGB = np.array([0.86, 0.46, 0.38])
_POLYP_RGB = np.array([0.92, 0.55, 0.50])


def _irregular_distance(yy, xx, cy, cx, r, rng) -> np.ndarray:
    """Normalised radius of a blob whose outline is a circle perturbed by low harmonics."""
    dy, dx = yy - cy, xx - cx
    rho = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx)
    outline = np.ones_like(theta)
    for k in (2, 3, 4):
        outline += rng.uniform(0, 0.08) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    aspect = rng.uniform(0.8, 1.0)
    tilt = rng.uniform(0, math.pi)
    outline *= 1.0 / np.sqrt((np.cos(theta - tilt)) ** 2 + (np.sin(theta - tilt) / aspect) ** 2)
    return rho / (r * outline)


def render_polyp(rng: np.random.Generator, domain: PolypDomain, size: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one frame and its polyp mask.

    Returns
    -------
    image : uint8 ``(H, W, 3)``
    mask : uint8 ``(H, W)`` with 255 polyp, 0 background
    stats : number of polyps and polyp area fraction
    """
    w, h = domain.size[size]
    scale = min(w, h) / min(domain.size["small"])
    yy, xx = grid(h, w)
    short = min(w, h)

    angle = rng.uniform(0, math.pi)
    period = short * rng.uniform(0.18, 0.3)
    warp = 2.5 * smooth_noise(rng, (h, w), short / 6)
    folds = np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period + warp)
    texture = 0.04 * smooth_noise(rng, (h, w), short / 50)
    image = _MUCOSA_RGB[None, None, :] * (1 + 0.10 * folds + texture)[..., None]

    lumen_cy, lumen_cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
    lumen_r = short * rng.uniform(0.08, 0.16)
    lumen = soft_inside(ellipse_distance(yy, xx, lumen_cy, lumen_cx, lumen_r, lumen_r * 1.3, angle), 0.8)
    image *= (1 - 0.75 * lumen)[..., None]

    n_polyps = int(rng.choice([0, 1, 2], p=[0.1, 0.7, 0.2]))
    mask = np.zeros((h, w), bool)
    polyp_alpha = np.zeros((h, w))
    highlight_weight = np.full((h, w), 0.3)
    for _ in range(n_polyps):
        r = short * rng.uniform(0.08, 0.2)
        cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
        d = _irregular_distance(yy, xx, cy, cx, r, rng)
        inside = d <= 1
        mask |= inside
        alpha = soft_inside(d, 0.06)
        light = np.clip(1 - d**2, 0, 1) * (1 + 0.5 * ((cy - yy) + (cx - xx)) / r)
        tint = _POLYP_RGB * rng.uniform(0.92, 1.08, 3)
        polyp = tint[None, None, :] * (0.85 + 0.25 * light + 0.06 * smooth_noise(rng, (h, w), short / 80))[..., None]
        image = image * (1 - alpha[..., None]) + polyp * alpha[..., None]
        polyp_alpha = np.maximum(polyp_alpha, alpha)
        highlight_weight += 3.0 * inside

    # specular highlights: small saturated spots, preferably on polyps (wet, convex surfaces)
    prob = (highlight_weight / highlight_weight.sum()).ravel()
    n_spots = int(rng.integers(*domain.highlights))
    spots = np.zeros((h, w))
    for idx in rng.choice(h * w, size=n_spots, p=prob):
        sy, sx = divmod(int(idx), w)
        sr = short * rng.uniform(0.004, 0.015)
        spots = np.maximum(spots, soft_inside(ellipse_distance(yy, xx, sy, sx, sr, sr * rng.uniform(1, 2.5),
                                                               rng.uniform(0, math.pi)), 0.3))

    r_centre = ellipse_distance(yy, xx, h / 2, w / 2, h / 2, w / 2)
    image *= (1 - domain.falloff * np.clip(r_centre, 0, 1.5) ** 2 / 2.25)[..., None]
    image = image * (1 - spots[..., None]) + spots[..., None]  # highlights saturate the sensor
    image = camera_response(image, rng, channel_gain=domain.channel_gain, gamma=domain.gamma,
                            contrast=domain.contrast, blur_sigma=domain.blur_sigma * scale, noise_std=domain.noise_std)

    # black frame border with cut corners, as endoscopy video frames have
    b = domain.border * short
    corner = 2.5 * b + 0.06 * short
    frame = (yy >= b) & (yy < h - b) & (xx >= b) & (xx < w - b)
    frame &= (np.minimum(xx, w - 1 - xx) + np.minimum(yy, h - 1 - yy)) >= corner
    image *= frame[..., None]
    mask &= frame

    image_u8 = jpeg_roundtrip(to_uint8(image), domain.jpeg_quality)
    stats = {"n_polyps": n_polyps, "polyp_fraction": round(float(mask.mean()), 6)}
    return image_u8, (mask * 255).astype(np.uint8), stats


def write_polyp_demo(out_dir: str | Path, size: str = "small", seed: int = 0) -> dict[str, Any]:
    """Write the synthetic 4-centre polyp dataset in the PraNet layout.

    Parameters
    ----------
    out_dir : folder for ``{Domain}/{images,masks}/``, ``manifest.json`` and ``README.md``.
    size : ``"small"`` or ``"medium"``.
    seed : master seed; the same seed writes byte-identical files.

    Returns
    -------
    dict
        The manifest that was written.
    """
    check_size(size)
    root = Path(out_dir)
    files, domains_info = [], {}
    for domain in POLYP_DOMAINS:
        cases = []
        for i in range(POLYP_COUNTS[size]):
            image, mask, stats = render_polyp(make_rng(seed, "polyp", domain.name, i), domain, size)
            img_path = root / domain.name / "images" / f"{i:04d}.png"
            mask_path = root / domain.name / "masks" / f"{i:04d}.png"
            save_png(img_path, image)
            save_png(mask_path, mask)
            files += [img_path, mask_path]
            cases.append({"image": str(img_path.relative_to(root)), "mask": str(mask_path.relative_to(root)),
                          **stats})
        domains_info[domain.name] = {
            "profile": asdict(domain),
            "count": POLYP_COUNTS[size],
            "image_size_wh": list(domain.size[size]),
            "cases": cases,
        }
    return write_dataset_docs(
        root,
        name="polyp",
        title="Synthetic multi-centre colonoscopy (polyps)",
        layout="{Kvasir,CVC-ClinicDB,CVC-ColonDB,ETIS-LaribPolypDB}/{images,masks}/*.png",
        description=(
            "Four centres named after the public polyp sets in PraNet's layout. Frames are RGB PNGs\n"
            "with 0-2 polyps and specular highlights; masks are single-channel PNGs, 255 = polyp,\n"
            "0 = background. Each centre has its own resolution and camera profile (see manifest)."
        ),
        seed=seed,
        size=size,
        extra={"mask_encoding": {"polyp": 255, "background": 0}, "domains": domains_info},
        files=files,
    )
