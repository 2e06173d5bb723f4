"""Segmentation metrics per region, per case and per domain, with no case dropped.

Predictions and references are **class-index maps**; metrics score **regions**, named
unions of classes (fundus: disc = {1, 2}, cup = {2}; SCGM: gm = {1}, cord = {1, 2}).

Rules, chosen so that every case yields a number or a visible NaN:

- **Dice** (MONAI ``compute_dice``, ``ignore_empty=False``): 1 when reference and
  prediction are both empty, 0 when exactly one is empty. Never NaN.
- **HD95** (MONAI ``compute_hausdorff_distance``, symmetric, 95th percentile, in the
  label's physical units when its pixel spacing is known, else pixels; needs scipy): 0
  when both are empty; **NaN** when exactly one is empty (the distance is undefined).
- **Aggregation**: per domain and region, mean and sample standard deviation over cases
  of the finite values, with ``n`` cases and ``n_nan`` NaNs reported next to them; the
  overall score is the mean of the domain means (each domain weighs the same, as in
  leave-one-domain-out reporting).
- Cases that cannot be read or predicted (with ``on_error="skip"``) are listed under
  ``skipped`` with the error, and counted; they are not silently left out.

:func:`evaluate_segmentation` runs any callable ``image -> logits`` over a datalist with a
MONAI transform pipeline and returns a :class:`SegmentationResults` (JSON, CSV, table).

Example
-------
>>> import numpy as np
>>> results = SegmentationResults(regions={"disc": [1, 2], "cup": [2]})
>>> ref = np.array([[0, 1, 2, 2]]); pred = np.array([[0, 1, 1, 2]])
>>> _ = results.add(pred, ref, case_id="a", domain="Domain1")
>>> results.cases[0]["dice_disc"], round(results.cases[0]["dice_cup"], 4)
(1.0, 0.6667)
>>> results.summary()["overall"]["disc"]["dice"]["mean"]
1.0
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medfound.errors import ConfigError, ImageReadError, LabelMismatchError
from medfound.transforms.regions import ClassesToRegions
from medfound.utils import atomic_write_json, atomic_write_text, check_choice, resolve_device

__all__ = [
    "METRICS",
    "region_masks",
    "dice_score",
    "hd95_score",
    "SegmentationResults",
    "combine_results",
    "default_eval_transform",
    "evaluate_segmentation",
]

#: metrics :class:`SegmentationResults` can compute
METRICS = ("dice", "hd95")


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _same_shape(pred: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = _as_numpy(pred), _as_numpy(ref)
    if pred.shape != ref.shape:
        raise LabelMismatchError(f"prediction and reference shapes differ: {pred.shape} vs {ref.shape}")
    return pred, ref


def region_masks(label: Any, regions: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """Boolean mask of each region (union of its classes) from a class-index map of any shape.

    The masks come from :class:`medfound.transforms.regions.ClassesToRegions`, the transform
    the training-time validation uses, so both score the same regions.

    Example
    -------
    >>> region_masks(np.array([0, 1, 2]), {"disc": [1, 2], "cup": [2]})["disc"].tolist()
    [False, True, True]
    """
    masks = ClassesToRegions(regions, dtype=bool)(_as_numpy(label)[None])
    return dict(zip(map(str, regions), masks))


def dice_score(pred: Any, ref: Any) -> float:
    """Dice of two boolean masks; 1.0 when both are empty (MONAI ``ignore_empty=False``).

    Example
    -------
    >>> round(dice_score(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])), 6)
    0.666667
    >>> dice_score(np.zeros(4), np.zeros(4))
    1.0
    """
    from monai.metrics import compute_dice

    pred, ref = _same_shape(pred, ref)
    p = torch.as_tensor(pred.astype(bool), dtype=torch.float64)[None, None]
    r = torch.as_tensor(ref.astype(bool), dtype=torch.float64)[None, None]
    return float(compute_dice(p, r, include_background=True, ignore_empty=False)[0, 0])


def hd95_score(pred: Any, ref: Any, spacing: Sequence[float] | None = None) -> float:
    """Symmetric 95th-percentile Hausdorff distance of two boolean masks.

    0.0 when both are empty, NaN when exactly one is empty. ``spacing`` gives the pixel
    size per axis (physical units); pixels when ``None``. Uses MONAI (needs scipy).

    Example
    -------
    >>> a = np.zeros((5, 5), bool); b = np.zeros((5, 5), bool)
    >>> a[0, 0] = True; b[3, 4] = True
    >>> hd95_score(a, b)
    5.0
    """
    p, r = (m.astype(bool) for m in _same_shape(pred, ref))
    if not p.any() and not r.any():
        return 0.0
    if not p.any() or not r.any():
        return float("nan")
    try:
        import scipy  # noqa: F401  (MONAI's surface distances need scipy.ndimage)
    except ImportError as err:
        raise ConfigError("the hd95 metric needs scipy: pip install scipy") from err
    from monai.metrics import compute_hausdorff_distance

    sp = None if spacing is None else [float(s) for s in spacing][: p.ndim]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's deprecation chatter inside its own helper
        value = compute_hausdorff_distance(
            torch.as_tensor(p, dtype=torch.float32)[None, None], torch.as_tensor(r, dtype=torch.float32)[None, None],
            include_background=True, percentile=95, spacing=sp)
    return float(value[0, 0])


def _fmt(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _stats(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0 if finite.size else float("nan"),
        "n": int(arr.size),
        "n_nan": int(arr.size - finite.size),
    }


class SegmentationResults:
    """Per-case metric rows and their per-domain aggregation.

    Parameters
    ----------
    regions : region name -> class indices.
    metrics : subset of :data:`METRICS`; ``("dice",)`` by default.

    Attributes
    ----------
    cases : one dict per case: ``case_id``, ``domain``, ``<metric>_<region>`` values, and
        any extra fields given to :meth:`add`.
    skipped : ``{"case_id", "domain", "error"}`` per case that could not be evaluated.
    """

    def __init__(self, regions: Mapping[str, Sequence[int]], metrics: Sequence[str] = ("dice",)) -> None:
        if not regions:
            raise ConfigError("regions must name at least one region, e.g. {'disc': [1, 2]}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ConfigError(f"unknown metric(s) {unknown}; choose from {METRICS}")
        self.regions = {str(k): [int(v) for v in vs] for k, vs in regions.items()}
        self.metrics = list(metrics)
        self.cases: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []

    @property
    def columns(self) -> list[str]:
        """Metric columns, ``<metric>_<region>``."""
        return [f"{m}_{r}" for m in self.metrics for r in self.regions]

    def add(self, pred: Any, ref: Any, case_id: str, domain: str, spacing: Sequence[float] | None = None,
            **extra: Any) -> dict[str, Any]:
        """Score one case from class-index maps of equal shape; returns its row."""
        pred, ref = _as_numpy(pred), _as_numpy(ref)
        if pred.shape != ref.shape:
            raise LabelMismatchError(f"case {case_id}: prediction {pred.shape} and label {ref.shape} differ in shape")
        row: dict[str, Any] = {"case_id": str(case_id), "domain": str(domain), **extra}
        pm, rm = region_masks(pred, self.regions), region_masks(ref, self.regions)
        for region in self.regions:
            if "dice" in self.metrics:
                row[f"dice_{region}"] = dice_score(pm[region], rm[region])
            if "hd95" in self.metrics:
                row[f"hd95_{region}"] = hd95_score(pm[region], rm[region], spacing)
        self.cases.append(row)
        return row

    def add_failure(self, case_id: str, domain: str, error: str) -> None:
        """Record a case that could not be evaluated."""
        self.skipped.append({"case_id": str(case_id), "domain": str(domain), "error": str(error)})

    def domains(self) -> list[str]:
        """Domains with at least one case, sorted."""
        return sorted({c["domain"] for c in self.cases})

    def summary(self) -> dict[str, Any]:
        """Aggregates: ``per_domain[domain][region][metric]`` and ``overall[region][metric]``.

        Each leaf has ``mean``, ``std``, ``n``, ``n_nan``; ``overall`` means are means of
        the domain means (``n`` = number of domains), plus the per-metric mean over regions
        under ``overall["mean"]``.
        """
        per_domain: dict[str, Any] = {}
        for domain in self.domains():
            rows = [c for c in self.cases if c["domain"] == domain]
            per_domain[domain] = {r: {m: _stats([row[f"{m}_{r}"] for row in rows]) for m in self.metrics}
                                  for r in self.regions}
        overall: dict[str, Any] = {}
        for r in self.regions:
            overall[r] = {}
            for m in self.metrics:
                s = _stats([per_domain[d][r][m]["mean"] for d in per_domain])
                s["n_nan_cases"] = sum(per_domain[d][r][m]["n_nan"] for d in per_domain)
                overall[r][m] = s
        overall["mean"] = {m: _stats([overall[r][m]["mean"] for r in self.regions]) for m in self.metrics}
        return {
            "regions": self.regions,
            "metrics": self.metrics,
            "n_cases": len(self.cases),
            "n_skipped": len(self.skipped),
            "per_domain": per_domain,
            "overall": overall,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything as one JSON-able dict: summary, cases, skipped."""
        return {**self.summary(), "cases": self.cases, "skipped": self.skipped}

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON (atomically; NaN written as ``NaN``)."""
        return atomic_write_json(path, self.to_dict(), sort_keys=True)

    def cases_csv(self) -> str:
        """Per-case table: ``case_id, domain, <extra fields>, <metric>_<region>...``."""
        extra = sorted({k for c in self.cases for k in c} - {"case_id", "domain", *self.columns})
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["case_id", "domain", *extra, *self.columns])
        for c in self.cases:
            writer.writerow([c["case_id"], c["domain"], *[c.get(k, "") for k in extra],
                             *[_fmt(c[k]) for k in self.columns]])
        return buf.getvalue()

    def summary_csv(self) -> str:
        """Aggregate table: ``domain, region, metric, mean, std, n, n_nan``; domain ``mean`` = mean of domains."""
        s = self.summary()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["domain", "region", "metric", "mean", "std", "n", "n_nan"])
        for domain, regions in s["per_domain"].items():
            for r, metrics in regions.items():
                for m, st in metrics.items():
                    writer.writerow([domain, r, m, _fmt(st["mean"]), _fmt(st["std"]), st["n"], st["n_nan"]])
        for r in [*self.regions, "mean"]:
            for m in self.metrics:
                st = s["overall"][r][m]
                writer.writerow(["mean", r, m, _fmt(st["mean"]), _fmt(st["std"]), st["n"],
                                 st.get("n_nan_cases", 0) if r != "mean" else 0])
        return buf.getvalue()

    def to_csv(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``<stem>_cases.csv`` and ``<stem>_summary.csv`` next to ``path``; returns both paths."""
        stem = Path(path).with_suffix("")
        cases = atomic_write_text(Path(f"{stem}_cases.csv"), self.cases_csv())
        summary = atomic_write_text(Path(f"{stem}_summary.csv"), self.summary_csv())
        return cases, summary

    def format_table(self, metric: str = "dice") -> str:
        """Plain-text table: one row per domain (mean +- std), then the mean of domains."""
        if metric not in self.metrics:
            raise ConfigError(f"metric {metric!r} was not computed; have {self.metrics}")
        s = self.summary()
        names = [*self.regions, "mean"]
        lines = [f"{metric:<20}" + "".join(f"{n:>18}" for n in names)]
        for domain, regions in s["per_domain"].items():
            cells = []
            for r in self.regions:
                st = regions[r][metric]
                nan = f" ({st['n_nan']} NaN)" if st["n_nan"] else ""
                cells.append(f"{_fmt(st['mean'])} ± {_fmt(st['std'])}{nan}")
            means = [regions[r][metric]["mean"] for r in self.regions]
            cells.append(_fmt(float(np.nanmean(means)) if np.isfinite(means).any() else float("nan")))
            lines.append(f"{domain + ' (n=' + str(regions[next(iter(self.regions))][metric]['n']) + ')':<20}"
                         + "".join(f"{c:>18}" for c in cells))
        overall = "".join(f"{_fmt(s['overall'][n][metric]['mean']):>18}" for n in names)
        lines.append(f"{'mean of domains':<20}" + overall)
        if self.skipped:
            lines.append(f"skipped cases: {len(self.skipped)} (see 'skipped')")
        return "\n".join(lines)


def combine_results(results: Iterable[SegmentationResults]) -> SegmentationResults:
    """Pool several results with the same regions and metrics (e.g. one per held-out domain)."""
    results = list(results)
    if not results:
        raise ConfigError("combine_results needs at least one result")
    first = results[0]
    out = SegmentationResults(first.regions, first.metrics)
    for r in results:
        if r.regions != first.regions or r.metrics != first.metrics:
            raise ConfigError("cannot combine results with different regions or metrics")
        out.cases += [dict(c) for c in r.cases]
        out.skipped += [dict(s) for s in r.skipped]
    return out


def default_eval_transform(image_key: str = "image", label_key: str = "label") -> Callable:
    """Loading pipeline for 2D images and class-index labels: load, channel first, image to [0, 1].

    Use the preprocessing the model was trained with instead when it differs (e.g.
    resizing or another normalisation); metrics are computed on the label as the
    pipeline returns it.
    """
    from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, ScaleIntensityd

    keys = [image_key, label_key]
    return Compose([
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        ScaleIntensityd(keys=image_key, minv=0.0, maxv=1.0),
        EnsureTyped(keys=keys, dtype=torch.float32),
    ])


def _spacing_of(label: Any) -> list[float] | None:
    pixdim = getattr(label, "pixdim", None)
    if pixdim is None:
        return None
    values = [float(v) for v in _as_numpy(pixdim).ravel()]
    return values or None


def evaluate_segmentation(
    model: Callable[[torch.Tensor], Any],
    items: Sequence[Mapping[str, Any]],
    regions: Mapping[str, Sequence[int]],
    transform: Callable[[dict], dict] | None = None,
    metrics: Sequence[str] = ("dice",),
    device: str | torch.device | None = None,
    inferer: Callable[[torch.Tensor, Callable], Any] | None = None,
    amp: bool = True,
    image_key: str = "image",
    label_key: str = "label",
    on_error: str = "skip",
    extra_keys: Sequence[str] = ("subject", "split"),
    log: Callable[[str], None] | None = None,
) -> SegmentationResults:
    """Run a segmentation model over datalist items and score every case per region.

    Parameters
    ----------
    model : any callable ``(1, C, H, W) -> logits (1, K, H, W)`` (an ``nn.Module`` is put in
        eval mode for the run and restored afterwards); a dict output uses its ``"logits"``.
    items : datalist items with ``image``, ``label``, ``domain`` (and ``case_id``), e.g.
        ``load_split(path, "test")``.
    regions : region name -> class indices (a datalist's ``"regions"``).
    transform : MONAI pipeline mapping an item to tensors ``image (C, H, W)`` and ``label
        (1, H, W)``; :func:`default_eval_transform` when ``None``. Use the model's training
        preprocessing (without random augmentation).
    metrics : ``("dice",)`` or ``("dice", "hd95")``.
    device : where the model runs (default: CUDA when available, else CPU).
    inferer : optional MONAI inferer called as ``inferer(image, model)`` (e.g.
        ``SlidingWindowInferer``); plain ``model(image)`` otherwise.
    amp : autocast on CUDA (ignored on CPU).
    on_error : ``"skip"`` (default: a case that fails to load or predict is recorded in
        ``skipped`` and the run goes on) or ``"raise"``.
    extra_keys : item fields copied into the per-case rows when present.
    log : optional progress callback.

    Returns
    -------
    SegmentationResults

    Example
    -------
    >>> import torch
    >>> identity = lambda x: torch.nn.functional.one_hot(x[:, 0].long(), 3).permute(0, 3, 1, 2).float()
    >>> item = {"image": torch.tensor([[[0, 1, 2]]]), "label": torch.tensor([[[0, 1, 2]]]),
    ...         "domain": "A", "case_id": "a"}
    >>> res = evaluate_segmentation(identity, [item], {"disc": [1, 2]}, transform=lambda d: d)
    >>> res.cases[0]["dice_disc"]
    1.0
    """
    check_choice(on_error, ("skip", "raise"), "on_error")
    results = SegmentationResults(regions, metrics)
    transform = default_eval_transform(image_key, label_key) if transform is None else transform
    device = resolve_device(device)
    module = model if isinstance(model, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.to(device).eval()
    try:
        for index, item in enumerate(items):
            case_id = str(item.get("case_id", item.get(image_key, index)))
            domain = str(item.get("domain", "unknown"))
            try:
                if label_key not in item:
                    raise LabelMismatchError(f"case {case_id}: item has no {label_key!r}")
                for key in (image_key, label_key):
                    if isinstance(item[key], (str, os.PathLike)) and not os.path.exists(item[key]):
                        raise ImageReadError(f"{item[key]}: file not found (case {case_id}, {key!r})")
                data = transform(dict(item))
                image = torch.as_tensor(data[image_key])
                label = data[label_key]
                x = image[None].to(device=device, dtype=torch.float32)
                use_amp = amp and device.type == "cuda"
                with torch.inference_mode(), torch.autocast(device_type=device.type, enabled=use_amp):
                    out = inferer(x, model) if inferer is not None else model(x)
                if isinstance(out, Mapping):
                    out = out["logits"]
                pred = torch.as_tensor(out).float().argmax(dim=1)[0]
                ref = torch.as_tensor(_as_numpy(label))
                ref = ref[0] if ref.ndim == pred.ndim + 1 else ref
                extra = {k: item[k] for k in extra_keys if k in item}
                results.add(pred, ref.round().long(), case_id, domain, spacing=_spacing_of(label), **extra)
            except Exception as err:  # a long run reports bad cases instead of dying
                if on_error == "raise":
                    raise
                results.add_failure(case_id, domain, f"{type(err).__name__}: {err}")
            if log is not None and (index + 1) % 50 == 0:
                log(f"evaluated {index + 1}/{len(items)} cases")
    finally:
        if module is not None:
            module.train(was_training)
    return results
