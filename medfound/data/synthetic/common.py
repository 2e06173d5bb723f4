"""Building blocks shared by the synthetic dataset generators.

Everything here is deterministic: random numbers come from :func:`make_rng`, which
derives an independent stream from ``(seed, *keys)``, so one image can be regenerated
without generating the others, and files are written without timestamps.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from medfound.errors import ConfigError
from medfound.transforms.intensity import gaussian_blur
from medfound.utils import atomic_write_json

__all__ = [
    "GENERATOR_VERSION",
    "SIZES",
    "check_size",
    "grid",
    "ellipse_distance",
    "soft_inside",
    "smooth_noise",
    "draw_curves",
    "camera_response",
    "jpeg_roundtrip",
    "to_uint8",
    "save_png",
    "sha256_file",
    "write_dataset_docs",
]

#: Bumped whenever a generator's output changes for the same seed.
GENERATOR_VERSION = "1.1.0"  # 1.1.0: larger CT chest nodules inside the lung (multitask)

#: Named dataset sizes; each generator maps them to its own counts and resolutions.
SIZES = ("small", "medium")


def check_size(size: str) -> str:
    """Return ``size`` if it is a known preset, else raise :class:`ConfigError`."""
    if size not in SIZES:
        raise ConfigError(f"unknown demo size {size!r}; choose one of {', '.join(SIZES)}")
    return size


def grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(yy, xx)`` as float64 arrays of shape ``(height, width)``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    return yy, xx


def ellipse_distance(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, theta: float = 0.0
) -> np.ndarray:
    """Normalised elliptical radius: ``< 1`` inside the ellipse, ``1`` on its border.

    ``theta`` rotates the ellipse (radians, counter-clockwise in image coordinates).
    """
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(theta), np.sin(theta)
    u = (c * dx + s * dy) / rx
    v = (-s * dx + c * dy) / ry
    return np.sqrt(u * u + v * v)


def soft_inside(distance: np.ndarray, softness: float) -> np.ndarray:
    """Smooth indicator of ``distance < 1`` with a logistic edge ``softness`` wide (in distance units)."""
    return 1.0 / (1.0 + np.exp(np.clip((distance - 1.0) / max(softness, 1e-6), -50, 50)))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], correlation: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field with a correlation length of ``correlation`` pixels."""
    field = gaussian_blur(rng.standard_normal(shape), correlation, spatial_axes=(0, 1))
    std = field.std()
    return field / std if std > 0 else field


def draw_curves(
    shape: tuple[int, int],
    curves: Sequence[Sequence[tuple[float, float]]],
    widths: Sequence[float],
    supersample: int = 2,
) -> np.ndarray:
    """Rasterise polylines (``[(x, y), ...]``) of given widths into a float map in ``[0, 1]``.

    Drawn at ``supersample`` times the resolution and box-averaged down, so thin
    curves get anti-aliased edges.
    """
    h, w = shape
    canvas = Image.new("L", (w * supersample, h * supersample), 0)
    draw = ImageDraw.Draw(canvas)
    for points, width in zip(curves, widths):
        pts = [(x * supersample, y * supersample) for x, y in points]
        lw = max(1, int(round(width * supersample)))
        draw.line(pts, fill=255, width=lw, joint="curve")
    arr = np.asarray(canvas, dtype=np.float64) / 255.0
    return arr.reshape(h, supersample, w, supersample).mean(axis=(1, 3))


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Clip a float image in ``[0, 1]`` and round to uint8."""
    return np.clip(np.rint(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def camera_response(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    channel_gain: Sequence[float],
    gamma: float,
    contrast: float,
    blur_sigma: float,
    noise_std: float,
) -> np.ndarray:
    """A site's camera: colour balance, gamma, contrast about the mean, optical blur, sensor noise.

    ``image`` is ``(H, W, 3)`` in ``[0, 1]``; the result is not clipped (quantisation clips).
    """
    image = np.clip(image * np.asarray(channel_gain), 0, 1) ** gamma
    image = np.clip((image - image.mean()) * contrast + image.mean(), 0, 1)
    image = gaussian_blur(image, blur_sigma, spatial_axes=(0, 1))
    return image + rng.normal(0, noise_std, image.shape)


def jpeg_roundtrip(image_u8: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode with JPEG at ``quality`` to imprint block and ringing artefacts."""
    buf = io.BytesIO()
    Image.fromarray(image_u8).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert(Image.fromarray(image_u8).mode))


def save_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 ``(H, W)`` or ``(H, W, 3)`` array as PNG (deterministic bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", optimize=False, compress_level=6)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_dataset_docs(
    root: Path,
    *,
    name: str,
    title: str,
    layout: str,
    description: str,
    seed: int,
    size: str,
    extra: dict[str, Any],
    files: Sequence[Path],
) -> dict[str, Any]:
    """Write ``manifest.json`` and ``README.md`` into a dataset folder and return the manifest.

    The manifest lists every file with its SHA-256 so a copy can be verified, and states
    plainly that the data is synthetic.
    """
    manifest = {
        "name": name,
        "synthetic": True,
        "notice": "SYNTHETIC DEMO DATA generated by medfound; not real patient images. "
        "Do not report results on it as results on the real benchmark.",
        "generator": f"medfound.data.synthetic.{name}",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "size": size,
        "layout": layout,
        **extra,
        "files": {str(p.relative_to(root)): sha256_file(p) for p in sorted(files)},
    }
    atomic_write_json(root / "manifest.json", manifest, sort_keys=True)
    readme = (
        f"# {title} (SYNTHETIC)\n\n"
        "**This is synthetic demo data generated by medfound. It contains no real patient images.**\n"
        "Results on it say nothing about the real benchmark it imitates.\n\n"
        f"- generator: `medfound.data.synthetic.{name}` version {GENERATOR_VERSION}\n"
        f"- seed: {seed}\n- size preset: {size}\n"
        f"- layout: `{layout}`\n\n"
        f"{description.strip()}\n\n"
        "Regenerate with:\n\n"
        f"```bash\nmedfound demo-data OUT_DIR --size {size} --seed {seed} --datasets {name}\n```\n\n"
        "`manifest.json` lists every file with its SHA-256, the per-domain acquisition\n"
        "profiles and per-case label statistics.\n"
    )
    (root / "README.md").write_text(readme)
    return manifest
