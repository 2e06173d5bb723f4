"""SCGM adapter: majority vote, reorientation and axial slices from the synthetic release, broken copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medfound.data.scgm import find_scgm_subjects, scgm_datalist
from medfound.data.splits import make_cdssdg_split
from medfound.errors import DatasetLayoutError, ImageReadError, LabelMismatchError


def _mini_scgm(demo_root: Path, dest: Path, subjects=("site1-sc01", "site2-sc01", "site2-sc02")) -> Path:
    dest.mkdir(parents=True)
    for f in sorted((demo_root / "scgm").glob("site*-sc*.nii.gz")):
        if any(f.name.startswith(s + "-") for s in subjects):
            shutil.copy(f, dest / f.name)
    return dest


def _vote(masks: list[np.ndarray]) -> np.ndarray:
    stack = np.stack(masks)
    n = len(masks)
    cord = 2 * (stack > 0).sum(0) > n
    gm = 2 * (stack == 1).sum(0) > n
    return np.where(gm, 1, np.where(cord, 2, 0))


def test_scgm_datalist_on_demo_data(demo_root, tmp_path):
    root = demo_root / "scgm"
    manifest = json.loads((root / "manifest.json").read_text())
    datalist = scgm_datalist(root, cache_dir=tmp_path / "cache")
    assert datalist["domains"] == ["site1", "site2", "site3", "site4"] and datalist["synthetic"] is True
    assert datalist["regions"] == {"gm": [1], "cord": [1, 2]}
    assert datalist["class_names"] == ["background", "grey_matter", "white_matter"]
    expected = sum(c["shape"][2] for s in manifest["sites"].values() for c in s["cases"])
    assert datalist["num_items"] == expected == 72
    by_subject: dict[str, list] = {}
    for it in datalist["data"]:
        by_subject.setdefault(it["subject"], []).append(it)
        assert it["domain"] == it["subject"].split("-")[0]
    assert len(by_subject) == 16

    # site2 stores x and y reversed (negative affine diagonal); slices come out in RAS, as
    # the hand-made majority vote of the raw rater files flipped back
    subject = "site2-sc03"
    raw = [np.asarray(nib.load(root / f"{subject}-mask-r{r}.nii.gz").dataobj) for r in range(1, 5)]
    consensus = _vote(raw)[::-1, ::-1, :]
    image = np.asarray(nib.load(root / f"{subject}-image.nii.gz").dataobj, dtype=np.float64)[::-1, ::-1, :]
    for it in sorted(by_subject[subject], key=lambda it: it["slice_index"]):
        k = it["slice_index"]
        label = nib.load(it["label"])
        assert np.array_equal(np.asarray(label.dataobj), consensus[:, :, k])
        assert np.all(np.diag(label.affine)[:3] > 0)  # RAS
        img = np.asarray(nib.load(it["image"]).dataobj)
        assert img.dtype == np.float32 and img.min() == 0.0 and img.max() == 1.0  # per-slice percentile norm
        # monotone per-slice mapping of the raw intensities: the order of voxel values is kept
        raw_slice = image[:, :, k]
        lo, hi = np.percentile(raw_slice, [0.5, 99.5])
        assert np.allclose(img, np.clip((raw_slice - lo) / (hi - lo), 0, 1), atol=1e-5)


def test_scgm_cache_is_deterministic(demo_root, tmp_path):
    root = _mini_scgm(demo_root, tmp_path / "scgm")
    a = scgm_datalist(root, cache_dir=tmp_path / "a")
    b = scgm_datalist(root, cache_dir=tmp_path / "b")
    assert a["num_items"] == b["num_items"] == 3 + 6 + 6
    for x, y in zip(a["data"], b["data"]):
        assert Path(x["image"]).read_bytes() == Path(y["image"]).read_bytes()
        assert Path(x["label"]).read_bytes() == Path(y["label"]).read_bytes()
    stamp = Path(a["data"][0]["image"]).stat().st_mtime_ns
    assert scgm_datalist(root, cache_dir=tmp_path / "a") == a
    assert Path(a["data"][0]["image"]).stat().st_mtime_ns == stamp  # reused, not rewritten
    # other options give another cache entry; crop and labelled-only filtering work
    cropped = scgm_datalist(root, cache_dir=tmp_path / "a", crop_size=24, labelled_only=True)
    shapes = {nib.load(it["image"]).shape for it in cropped["data"]}
    assert shapes == {(24, 24)}
    assert all((np.asarray(nib.load(it["label"]).dataobj) > 0).any() for it in cropped["data"])


def test_scgm_subjects_split_by_subject(demo_root, tmp_path):
    datalist = scgm_datalist(_mini_scgm(demo_root, tmp_path / "scgm", subjects=(
        "site1-sc01", "site1-sc02", "site1-sc03", "site2-sc01", "site3-sc01")), cache_dir=tmp_path / "c")
    split = make_cdssdg_split(datalist, "site3", "site1", labeled_ratio=0.5, val_ratio=0.34)
    parts = {}
    for name in ("labeled", "unlabeled", "validation", "test"):
        for it in split[name]:
            parts.setdefault(it["subject"], set()).add(name)
    assert all(len(v) == 1 for v in parts.values())
    assert {it["subject"] for it in split["validation"]} and len({it["subject"] for it in split["labeled"]}) == 1


def test_scgm_layout_errors(demo_root, tmp_path):
    root = _mini_scgm(demo_root, tmp_path / "scgm")
    shutil.copy(root / "site2-sc02-mask-r3.nii.gz", root / "site9-sc02-mask-r3.nii.gz")
    with pytest.raises(DatasetLayoutError, match=r"masks without an image.*site9-sc02"):
        scgm_datalist(root)
    (root / "site9-sc02-mask-r3.nii.gz").unlink()
    for r in (1, 2, 4):
        (root / f"site2-sc02-mask-r{r}.nii.gz").unlink()
    # a subject with one rater is still a valid (single-rater) consensus
    assert scgm_datalist(root, cache_dir=tmp_path / "c0")["num_items"] == 15
    (root / "site2-sc02-mask-r3.nii.gz").unlink()
    with pytest.raises(DatasetLayoutError, match=r"1 image\(s\) without rater masks.*site2-sc02-image"):
        scgm_datalist(root)
    unlabeled = scgm_datalist(root, cache_dir=tmp_path / "c1", missing_masks="unlabeled", crop_size=20)
    no_label = [it for it in unlabeled["data"] if it["subject"] == "site2-sc02"]
    assert len(no_label) == 6 and all("label" not in it for it in no_label)
    assert scgm_datalist(root, cache_dir=tmp_path / "c2", missing_masks="skip")["num_items"] == 9
    with pytest.raises(DatasetLayoutError, match=r"no images of site\(s\) \['site4'\]"):
        find_scgm_subjects(root, sites=["site4"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetLayoutError, match="no SCGM images"):
        scgm_datalist(empty)


def test_scgm_bad_masks_and_files(demo_root, tmp_path):
    root = _mini_scgm(demo_root, tmp_path / "scgm")
    mask_path = root / "site1-sc01-mask-r2.nii.gz"
    mask = nib.load(mask_path)
    data = np.asarray(mask.dataobj).copy()
    data[0, 0, 0] = 5
    nib.save(nib.Nifti1Image(data, mask.affine), mask_path)
    with pytest.raises(DatasetLayoutError, match=r"site1-sc01-mask-r2\.nii\.gz: mask values \[5\]"):
        scgm_datalist(root, cache_dir=tmp_path / "c1")
    nib.save(nib.Nifti1Image(data[:-2].clip(0, 2), mask.affine), mask_path)
    with pytest.raises(LabelMismatchError, match=r"site1-sc01-mask-r2\.nii\.gz: mask is \(62, 64, 3\)"):
        scgm_datalist(root, cache_dir=tmp_path / "c2")
    for r in (1, 3, 4):
        p = root / f"site1-sc01-mask-r{r}.nii.gz"
        m = nib.load(p)
        nib.save(nib.Nifti1Image(np.asarray(m.dataobj)[:-2], m.affine), p)
    with pytest.raises(LabelMismatchError, match=r"site1-sc01-mask-r1\.nii\.gz: mask is"):
        scgm_datalist(root, cache_dir=tmp_path / "c3")
    (root / "site2-sc01-image.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(ImageReadError, match=r"site2-sc01-image\.nii\.gz: cannot read"):
        find_scgm_subjects(root) and scgm_datalist(root, cache_dir=tmp_path / "c5", sites=["site2"])
    skipped = scgm_datalist(root, cache_dir=tmp_path / "c4", on_error="skip")
    assert {s["case"] for s in skipped["skipped"]} == {"site1-sc01", "site2-sc01"}
    assert skipped["num_items"] == 6 and {it["subject"] for it in skipped["data"]} == {"site2-sc02"}


def test_scgm_slices_evaluate_in_millimetres(demo_root, tmp_path):
    """The default evaluation pipeline reads the slices; HD95 uses the slice spacing (site1: 0.5 mm)."""
    import torch

    from medfound.evaluation.segmentation import evaluate_segmentation

    datalist = scgm_datalist(_mini_scgm(demo_root, tmp_path / "scgm", subjects=("site1-sc01",)),
                             cache_dir=tmp_path / "c")
    items = datalist["data"]
    labels = [torch.from_numpy(np.asarray(nib.load(it["label"]).dataobj).astype(np.int64)) for it in items]
    queue = list(labels)

    def shifted_oracle(x):  # the reference moved by one pixel along the first axis
        y = torch.roll(queue.pop(0), shifts=1, dims=0)
        assert x.shape == (1, 1, *y.shape)
        return torch.nn.functional.one_hot(y, 3).permute(2, 0, 1)[None].float()

    res = evaluate_segmentation(shifted_oracle, items, datalist["regions"], metrics=("dice", "hd95"),
                                on_error="raise")
    assert len(res.cases) == 3 and all(c["subject"] == "site1-sc01" for c in res.cases)
    for c in res.cases:
        assert c["hd95_cord"] == pytest.approx(0.5) and c["hd95_gm"] == pytest.approx(0.5)
        assert 0.5 < c["dice_gm"] < 1.0 and 0.8 < c["dice_cord"] < 1.0  # thin GM loses more
