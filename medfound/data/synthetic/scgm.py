"""Synthetic multi-site spinal cord grey matter MRI with four raters (SCGM challenge layout).

Layout written (the flat layout of the SCGM challenge release)::

    scgm/
      site1-sc01-image.nii.gz          3D T2*-like volume, int16
      site1-sc01-mask-r1.nii.gz        rater 1: 0 background, 1 grey matter, 2 white matter
      site1-sc01-mask-r2.nii.gz ... -r4.nii.gz
      site2-sc01-image.nii.gz ...
      manifest.json, README.md

The label values follow the release: grey matter = 1, white matter = 2, so the cord is
``mask > 0``. Anatomy is drawn in millimetres, then sampled on each site's grid, so the
sites differ as the real ones do: anisotropic voxel size (thick 5 mm or 2.5 mm slices,
0.5 to 0.25 mm in plane), orientation in the affine, GM/WM contrast, noise and bias
field; slice thickness adds partial-volume blur along the cord. The grey matter is a
butterfly (commissure, ventral and dorsal horns) inside an elliptical cord surrounded by
bright CSF. The four raters draw the same anatomy with small, rater-specific boundary
offsets and shifts, so their masks differ slightly.

Example
-------
>>> import tempfile
>>> from medfound.data.synthetic.scgm import write_scgm_demo
>>> manifest = write_scgm_demo(tempfile.mkdtemp(), size="small", seed=0)
>>> manifest["sites"]["site1"]["spacing_mm"]
[0.5, 0.5, 5.0]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medfound.data.synthetic.common import check_size, smooth_noise, write_dataset_docs
from medfound.transforms.intensity import gaussian_blur
from medfound.utils import make_rng

__all__ = ["ScgmSite", "SCGM_SITES", "SCGM_COUNTS", "N_RATERS", "render_scgm_subject", "write_scgm_demo"]

GM_VALUE, WM_VALUE = 1, 2
N_RATERS = 4


@dataclass(frozen=True)
class ScgmSite:
    """Acquisition profile of one synthetic MRI site."""

    name: str
    imitates: str
    spacing: tuple[float, float, float]  # (x, y, z) in mm; z is the slice thickness
    axis_flip: tuple[bool, bool]  # store x / y axes reversed (affine with negative diagonal)
    gm_contrast: float  # GM signal above WM, relative to WM
    noise_std: float  # Rician noise, relative to the CSF signal
    bias: float  # strength of the smooth multiplicative bias field
    scale: float  # signal of CSF in stored units


SCGM_SITES: tuple[ScgmSite, ...] = (
    ScgmSite("site1", "UCL (3T Philips)", (0.5, 0.5, 5.0), (False, False), 0.55, 0.03, 0.10, 700.0),
    ScgmSite("site2", "Polytechnique Montreal (3T Siemens)", (0.5, 0.5, 2.5), (True, True), 0.30, 0.06, 0.25, 1300.0),
    ScgmSite("site3", "UHZ Zurich (3T Siemens)", (0.29, 0.29, 5.0), (False, False), 0.70, 0.04, 0.15, 2100.0),
    ScgmSite("site4", "Vanderbilt (3T Philips)", (0.25, 0.25, 2.5), (True, False), 0.40, 0.08, 0.20, 900.0),
)

#: subjects per site, field of view in plane (mm) and cranio-caudal extent (mm) per size preset
SCGM_COUNTS: dict[str, dict[str, float]] = {
    "small": {"subjects": 4, "fov_mm": 32.0, "extent_mm": 15.0},
    "medium": {"subjects": 10, "fov_mm": 48.0, "extent_mm": 30.0},
}

# grey matter butterfly in cord-normalised coordinates (u: left-right, v: posterior -> anterior):
# (u centre, v centre, u radius, v radius, rotation); mirrored for the two halves
_GM_PARTS = (
    (0.00, 0.02, 0.30, 0.10, 0.0),  # grey commissure
    (0.28, 0.28, 0.19, 0.28, 0.35),  # ventral horn
    (0.19, -0.34, 0.07, 0.36, -0.35),  # dorsal horn
)


@dataclass
class _Anatomy:
    cx: float
    cy: float
    a: float  # cord semi-axis left-right (mm)
    b: float  # cord semi-axis anterior-posterior (mm)
    theta: float
    tilt: tuple[float, float]  # centre drift per mm along z
    horn: float  # horn size factor


def _ellipse(u, v, cu, cv, ru, rv, rot):
    c, s = math.cos(rot), math.sin(rot)
    du, dv = u - cu, v - cv
    return np.sqrt(((c * du + s * dv) / ru) ** 2 + ((-s * du + c * dv) / rv) ** 2)


def _tissue_distances(anat: _Anatomy, x, y, z, shift=(0.0, 0.0)):
    """Distances (normalised, < 1 inside) to the cord and the GM butterfly at mm positions."""
    swell = 1.0 + 0.06 * np.sin(2 * math.pi * z / 40.0)  # cervical enlargement along the cord
    a, b = anat.a * swell, anat.b * swell
    cx = anat.cx + anat.tilt[0] * z + shift[0]
    cy = anat.cy + anat.tilt[1] * z + shift[1]
    c, s = math.cos(anat.theta), math.sin(anat.theta)
    dx, dy = x - cx, y - cy
    u = (c * dx + s * dy) / a
    v = (-s * dx + c * dy) / b
    d_cord = np.sqrt(u * u + v * v)
    d_gm = np.full_like(d_cord, np.inf)
    for cu, cv, ru, rv, rot in _GM_PARTS:
        ru, rv = ru * anat.horn, rv * anat.horn
        for side in (-1.0, 1.0):
            d_gm = np.minimum(d_gm, _ellipse(u, v, side * cu, cv, ru, rv, side * rot))
    d_csf = np.sqrt((dx / (a + 2.5)) ** 2 + (dy / (b + 2.2)) ** 2)
    return d_cord, d_gm, d_csf


def _intensity(site: ScgmSite, d_cord, d_gm, d_csf, tissue):
    wm = 0.30
    img = np.where(d_csf < 1, 1.0, tissue)
    img = np.where(d_cord < 1, wm, img)
    return np.where((d_gm < 1) & (d_cord < 1), wm * (1 + site.gm_contrast), img)


def render_scgm_subject(
    rng: np.random.Generator, site: ScgmSite, size: str
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, dict]:
    """Render one subject: image volume, four rater masks, affine and label statistics.

    Returns
    -------
    image : int16 ``(X, Y, Z)``
    masks : list of four uint8 ``(X, Y, Z)`` arrays (0 background, 1 GM, 2 WM)
    affine : ``(4, 4)`` voxel-to-world (RAS, mm)
    stats : GM and cord areas (mm^2, rater 1, mean over slices) and rater agreement
    """
    cfg = SCGM_COUNTS[size]
    sx, sy, sz = site.spacing
    nx, ny = int(round(cfg["fov_mm"] / sx)), int(round(cfg["fov_mm"] / sy))
    nz = int(round(cfg["extent_mm"] / sz))
    fov = cfg["fov_mm"]
    anat = _Anatomy(
        cx=fov / 2 + rng.normal(0, 1.5), cy=fov / 2 + rng.normal(0, 1.5),
        a=rng.uniform(5.4, 6.4), b=rng.uniform(3.7, 4.4), theta=rng.normal(0, 0.12),
        tilt=(rng.normal(0, 0.04), rng.normal(0, 0.04)), horn=rng.uniform(0.92, 1.08),
    )

    # image: 2x supersampled in plane and several sub-slices through the thickness (partial volume)
    ss, nsub = 2, max(2, int(round(sz / 1.0)))
    xs = (np.arange(nx * ss) + 0.5) / ss * sx
    ys = (np.arange(ny * ss) + 0.5) / ss * sy
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    tissue = 0.45 + 0.08 * smooth_noise(rng, gx.shape, 3.0 / sx * ss)
    image = np.zeros((nx, ny, nz))
    for k in range(nz):
        acc = np.zeros_like(gx)
        for t in range(nsub):
            z = (k + (t + 0.5) / nsub) * sz
            acc += _intensity(site, *_tissue_distances(anat, gx, gy, z), tissue)
        image[:, :, k] = (acc / nsub).reshape(nx, ss, ny, ss).mean(axis=(1, 3))

    bias = 1.0 + site.bias * np.tanh(smooth_noise(rng, (nx, ny), 12.0 / sx))
    image *= bias[:, :, None]
    sigma = site.noise_std
    image = np.sqrt((image + rng.normal(0, sigma, image.shape)) ** 2 + rng.normal(0, sigma, image.shape) ** 2)
    image = gaussian_blur(image, 0.3, spatial_axes=(0, 1))  # in-plane point-spread
    image_i16 = np.clip(np.rint(image * site.scale), 0, 32767).astype(np.int16)

    # masks at voxel centres; each rater draws the boundary slightly differently
    cx_v = (np.arange(nx) + 0.5) * sx
    cy_v = (np.arange(ny) + 0.5) * sy
    vx, vy = np.meshgrid(cx_v, cy_v, indexing="ij")
    masks = []
    for _ in range(N_RATERS):
        gm_off, cord_off = rng.normal(0, 0.06), rng.normal(0, 0.025)
        shift = (rng.normal(0, 0.12), rng.normal(0, 0.12))
        mask = np.zeros((nx, ny, nz), np.uint8)
        for k in range(nz):
            d_cord, d_gm, _ = _tissue_distances(anat, vx, vy, (k + 0.5) * sz, shift)
            cord = d_cord < 1 + cord_off
            mask[:, :, k][cord] = WM_VALUE
            mask[:, :, k][cord & (d_gm < 1 + gm_off)] = GM_VALUE
        masks.append(mask)

    # store with the site's orientation: flipping an axis flips the array and the affine together
    affine = np.diag([sx, sy, sz, 1.0])
    for axis, flip in enumerate(site.axis_flip):
        if flip:
            image_i16 = np.flip(image_i16, axis)
            masks = [np.flip(m, axis) for m in masks]
            affine[axis, axis] = -affine[axis, axis]
            affine[axis, 3] = (image_i16.shape[axis] - 1) * site.spacing[axis]
    pixel_area = sx * sy
    gm_votes = np.mean([m == GM_VALUE for m in masks], axis=0)
    stats = {
        "shape": list(image_i16.shape),
        "gm_area_mm2": round(float((masks[0] == GM_VALUE).sum(axis=(0, 1)).mean() * pixel_area), 3),
        "cord_area_mm2": round(float((masks[0] > 0).sum(axis=(0, 1)).mean() * pixel_area), 3),
        "gm_rater_agreement": round(float(((gm_votes == 0) | (gm_votes == 1)).mean()), 6),
    }
    return np.ascontiguousarray(image_i16), [np.ascontiguousarray(m) for m in masks], affine, stats


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)  # nibabel writes .nii.gz without a gzip timestamp, so bytes are stable


def write_scgm_demo(out_dir: str | Path, size: str = "small", seed: int = 0) -> dict[str, Any]:
    """Write the synthetic 4-site spinal cord grey matter dataset in the SCGM layout.

    Parameters
    ----------
    out_dir : folder for ``siteK-scNN-image.nii.gz``, ``siteK-scNN-mask-rR.nii.gz``,
        ``manifest.json`` and ``README.md``.
    size : ``"small"`` or ``"medium"``.
    seed : master seed; the same seed writes byte-identical files.

    Returns
    -------
    dict
        The manifest that was written.
    """
    check_size(size)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    files, sites_info = [], {}
    for site in SCGM_SITES:
        cases = []
        for n in range(1, int(SCGM_COUNTS[size]["subjects"]) + 1):
            image, masks, affine, stats = render_scgm_subject(make_rng(seed, "scgm", site.name, n), site, size)
            stem = f"{site.name}-sc{n:02d}"
            img_path = root / f"{stem}-image.nii.gz"
            _save_nifti(img_path, image, affine)
            mask_paths = []
            for r, mask in enumerate(masks, start=1):
                mask_path = root / f"{stem}-mask-r{r}.nii.gz"
                _save_nifti(mask_path, mask, affine)
                mask_paths.append(mask_path)
            files += [img_path, *mask_paths]
            cases.append({"image": img_path.name, "masks": [p.name for p in mask_paths], **stats})
        sites_info[site.name] = {"profile": asdict(site), "spacing_mm": list(site.spacing), "cases": cases}
    return write_dataset_docs(
        root,
        name="scgm",
        title="Synthetic multi-site spinal cord grey matter MRI",
        layout="siteK-scNN-image.nii.gz, siteK-scNN-mask-rR.nii.gz (R = 1..4)",
        description=(
            "Four sites with the voxel sizes of the SCGM challenge sites (5 or 2.5 mm slices,\n"
            "0.5 to 0.25 mm in plane) and site-specific orientation, contrast, noise and bias field.\n"
            "Masks from four raters: 0 = background, 1 = grey matter, 2 = white matter\n"
            "(cord = mask > 0), as in the challenge release."
        ),
        seed=seed,
        size=size,
        extra={"mask_encoding": {"background": 0, "grey_matter": GM_VALUE, "white_matter": WM_VALUE},
               "raters": N_RATERS, "sites": sites_info},
        files=files,
    )
