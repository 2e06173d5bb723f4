"""Synthetic multi-site fundus photographs with optic disc and cup masks (DoFE layout).

Layout written (the one of the DoFE release, so :mod:`medfound.data` adapters read it
unchanged)::

    fundus/
      Domain1/train/ROIs/image/d1_train_0000.png   RGB photograph
      Domain1/train/ROIs/mask/d1_train_0000.png    RGB mask: 0 cup, 128 rim, 255 background
      Domain1/test/ROIs/...
      Domain2/ ... Domain4/
      manifest.json, README.md

Each domain imitates one real site with its own camera: colour balance, gamma and
contrast, blur, noise, illumination fall-off, field-of-view size, resolution and JPEG
quality. Disc size and position follow the same distribution everywhere, so label
statistics stay comparable, but the cup is smaller and has less contrast against the
rim in Domain3 and Domain4, which is where cup segmentation transfers worst.

Example
-------
>>> import tempfile
>>> from medfound.data.synthetic.fundus import write_fundus_demo
>>> manifest = write_fundus_demo(tempfile.mkdtemp(), size="small", seed=0)
>>> manifest["domains"]["Domain1"]["counts"]
{'test': 8, 'train': 16}
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
    draw_curves,
    ellipse_distance,
    grid,
    jpeg_roundtrip,
    save_png,
    smooth_noise,
    soft_inside,
    to_uint8,
    write_dataset_docs,
)
from medfound.transforms.intensity import gaussian_blur
from medfound.utils import make_rng

__all__ = ["FundusDomain", "FUNDUS_DOMAINS", "FUNDUS_COUNTS", "render_fundus", "write_fundus_demo"]

#: mask encoding of the DoFE release
CUP_VALUE, RIM_VALUE, BACKGROUND_VALUE = 0, 128, 255


@dataclass(frozen=True)
class FundusDomain:
    """Acquisition profile of one synthetic fundus site."""

    name: str
    imitates: str
    size: dict[str, int]
    channel_gain: tuple[float, float, float]
    gamma: float
    contrast: float
    blur_sigma: float  # in pixels at the "small" size, scaled with resolution
    noise_std: float
    falloff: float  # brightness loss at the field-of-view border (0 = flat)
    fov_radius: float  # field-of-view radius relative to half the image side
    jpeg_quality: int
    cup_to_disc: tuple[float, float]  # range of the vertical cup-to-disc ratio
    cup_contrast: float  # brightness of the cup over the rim, relative


FUNDUS_DOMAINS: tuple[FundusDomain, ...] = (
    FundusDomain("Domain1", "Drishti-GS", {"small": 256, "medium": 512}, (1.00, 0.97, 0.90), 1.00, 1.05,
                 0.5, 0.010, 0.25, 1.02, 95, (0.40, 0.62), 1.00),
    FundusDomain("Domain2", "RIM-ONE-r3", {"small": 224, "medium": 448}, (1.12, 0.78, 0.70), 1.30, 0.85,
                 1.0, 0.020, 0.45, 1.30, 70, (0.36, 0.58), 0.75),
    FundusDomain("Domain3", "REFUGE (train, Zeiss)", {"small": 288, "medium": 576}, (0.88, 0.92, 1.05), 1.15, 0.95,
                 1.4, 0.015, 0.35, 0.96, 80, (0.28, 0.45), 0.14),
    FundusDomain("Domain4", "REFUGE (validation, Canon)", {"small": 256, "medium": 512}, (1.05, 1.06, 0.98), 0.80, 1.15,
                 0.8, 0.025, 0.20, 1.12, 85, (0.30, 0.48), 0.20),
)

#: images per split and size preset
FUNDUS_COUNTS: dict[str, dict[str, int]] = {"small": {"train": 16, "test": 8}, "medium": {"train": 64, "test": 32}}

_RETINA_RGB = np.array([0.78, 0.36, 0.16])
_DISC_GAIN = np.array([0.20, 0.30, 0.20])
_CUP_GAIN = np.array([0.12, 0.16, 0.14])


def _vessel_tree(rng: np.random.Generator, s: int, cy: float, cx: float, r0: float) -> tuple[list, list]:
    """Random-walk vessels leaving the cup border (radius ``r0``), each with thinner branches."""
    curves, widths = [], []
    for _ in range(int(rng.integers(7, 11))):
        angle = rng.uniform(0, 2 * math.pi)
        curvature = rng.normal(0, 0.035)
        x, y = cx + r0 * math.cos(angle), cy + r0 * math.sin(angle)
        points = [(x, y)]
        for _ in range(int(rng.integers(24, 44))):
            angle += curvature + rng.normal(0, 0.07)
            x += s / 45 * math.cos(angle)
            y += s / 45 * math.sin(angle)
            points.append((x, y))
            if not (-0.1 * s < x < 1.1 * s and -0.1 * s < y < 1.1 * s):
                break
        width = s * rng.uniform(0.007, 0.014)
        curves.append(points)
        widths.append(width)
        for _ in range(int(rng.integers(1, 3))):
            start = int(rng.integers(len(points) // 4, max(len(points) // 4 + 1, len(points) - 2)))
            bx, by = points[start]
            b_angle = angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
            branch = [(bx, by)]
            for _ in range(int(rng.integers(8, 20))):
                b_angle += rng.normal(0, 0.12)
                bx += s / 50 * math.cos(b_angle)
                by += s / 50 * math.sin(b_angle)
                branch.append((bx, by))
            curves.append(branch)
            widths.append(width * 0.55)
    return curves, widths


def render_fundus(rng: np.random.Generator, domain: FundusDomain, size: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one fundus photograph and its disc/cup mask.

    Returns
    -------
    image : uint8 array ``(S, S, 3)``
    mask : uint8 array ``(S, S, 3)`` with 0 cup, 128 rim, 255 background (all channels equal)
    stats : dict of label statistics (disc and cup area fractions, vertical cup-to-disc ratio)
    """
    s = domain.size[size]
    scale = s / domain.size["small"]
    yy, xx = grid(s, s)

    fov_cy, fov_cx = s / 2 + rng.normal(0, 0.01 * s), s / 2 + rng.normal(0, 0.01 * s)
    fov_r = domain.fov_radius * s / 2 * rng.uniform(0.98, 1.02)
    r_fov = ellipse_distance(yy, xx, fov_cy, fov_cx, fov_r, fov_r)
    fov = soft_inside(r_fov, 0.004)

    disc_r = s * rng.uniform(0.12, 0.155)
    disc_cy = s / 2 + rng.uniform(-0.12, 0.12) * s
    disc_cx = s / 2 + rng.uniform(-0.12, 0.12) * s
    disc_ry, disc_rx = disc_r * rng.uniform(1.0, 1.10), disc_r
    disc_theta = rng.normal(0, 0.12)
    d_disc = ellipse_distance(yy, xx, disc_cy, disc_cx, disc_ry, disc_rx, disc_theta)

    cdr = rng.uniform(*domain.cup_to_disc)
    side = rng.choice([-1.0, 1.0])  # the cup sits towards the temporal side
    cup_cy = disc_cy + rng.normal(0, 0.04) * disc_r
    cup_cx = disc_cx + side * rng.uniform(0.0, 0.12) * disc_r
    cup_ry = cdr * disc_ry
    cup_rx = cdr * disc_rx * rng.uniform(0.9, 1.1)
    d_cup = ellipse_distance(yy, xx, cup_cy, cup_cx, cup_ry, cup_rx, disc_theta)

    texture = 0.05 * smooth_noise(rng, (s, s), s / 60) + 0.07 * smooth_noise(rng, (s, s), s / 10)
    image = _RETINA_RGB[None, None, :] * (1.0 + texture[..., None])
    # macula: a darker region about 2.5 disc diameters from the disc, towards the image centre
    mac_dir = np.array([s / 2 - disc_cy, s / 2 - disc_cx]) + 1e-6
    mac_dir /= np.linalg.norm(mac_dir)
    mac_c = np.array([disc_cy, disc_cx]) + mac_dir * 5 * disc_r
    macula = soft_inside(ellipse_distance(yy, xx, mac_c[0], mac_c[1], 1.6 * disc_r, 1.6 * disc_r), 0.5)
    image *= 1.0 - 0.25 * macula[..., None]

    image += soft_inside(d_disc, 0.07)[..., None] * _DISC_GAIN
    image += domain.cup_contrast * soft_inside(d_cup, 0.12)[..., None] * _CUP_GAIN

    curves, widths = _vessel_tree(rng, s, cup_cy, cup_cx, 0.9 * min(cup_ry, cup_rx))
    vessels = gaussian_blur(draw_curves((s, s), curves, widths), 0.5 * scale, spatial_axes=(0, 1))
    image *= 1.0 - vessels[..., None] * np.array([0.35, 0.60, 0.55])

    image *= (1.0 - domain.falloff * np.clip(r_fov, 0, 1.2) ** 2)[..., None]
    image = camera_response(image, rng, channel_gain=domain.channel_gain, gamma=domain.gamma,
                            contrast=domain.contrast, blur_sigma=domain.blur_sigma * scale, noise_std=domain.noise_std)
    image *= fov[..., None]
    image_u8 = jpeg_roundtrip(to_uint8(image), domain.jpeg_quality)

    disc = d_disc <= 1.0
    cup = (d_cup <= 1.0) & disc
    mask = np.full((s, s), BACKGROUND_VALUE, np.uint8)
    mask[disc] = RIM_VALUE
    mask[cup] = CUP_VALUE
    rows_disc, rows_cup = np.nonzero(disc.any(1))[0], np.nonzero(cup.any(1))[0]
    stats = {
        "disc_fraction": round(float(disc.mean()), 6),
        "cup_fraction": round(float(cup.mean()), 6),
        "vertical_cdr": round(float(len(rows_cup) / max(len(rows_disc), 1)), 4),
    }
    return image_u8, np.repeat(mask[..., None], 3, axis=2), stats


def write_fundus_demo(out_dir: str | Path, size: str = "small", seed: int = 0) -> dict[str, Any]:
    """Write the synthetic 4-domain fundus dataset in the DoFE layout.

    Parameters
    ----------
    out_dir : folder to write ``Domain1..4``, ``manifest.json`` and ``README.md`` into.
    size : ``"small"`` (fast, CPU demos and tests) or ``"medium"``.
    seed : master seed; the same seed writes byte-identical files.

    Returns
    -------
    dict
        The manifest that was written.
    """
    check_size(size)
    root = Path(out_dir)
    files, domains_info = [], {}
    for d_idx, domain in enumerate(FUNDUS_DOMAINS, start=1):
        cases = []
        for split, count in sorted(FUNDUS_COUNTS[size].items()):
            for i in range(count):
                rng = make_rng(seed, "fundus", domain.name, split, i)
                image, mask, stats = render_fundus(rng, domain, size)
                stem = f"d{d_idx}_{split}_{i:04d}.png"
                img_path = root / domain.name / split / "ROIs" / "image" / stem
                mask_path = root / domain.name / split / "ROIs" / "mask" / stem
                save_png(img_path, image)
                save_png(mask_path, mask)
                files += [img_path, mask_path]
                cases.append({"split": split, "image": str(img_path.relative_to(root)),
                              "mask": str(mask_path.relative_to(root)), **stats})
        domains_info[domain.name] = {
            "profile": asdict(domain),
            "counts": dict(sorted(FUNDUS_COUNTS[size].items())),
            "image_size": domain.size[size],
            "cases": cases,
        }
    return write_dataset_docs(
        root,
        name="fundus",
        title="Synthetic multi-site fundus (optic disc and cup)",
        layout="Domain{1..4}/{train,test}/ROIs/{image,mask}/*.png",
        description=(
            "Four domains imitate the DoFE release's sites (Drishti-GS, RIM-ONE-r3, REFUGE train,\n"
            "REFUGE validation). Images are RGB with a circular field of view, vessels, a bright optic\n"
            "disc and a brighter cup. Masks are RGB PNGs: 0 = cup, 128 = rim (disc minus cup),\n"
            "255 = background, so disc = mask <= 128 and cup = mask == 0, as in the real release.\n"
            "Domain3 and Domain4 have small, low-contrast cups."
        ),
        seed=seed,
        size=size,
        extra={"mask_encoding": {"cup": CUP_VALUE, "rim": RIM_VALUE, "background": BACKGROUND_VALUE},
               "domains": domains_info},
        files=files,
    )
