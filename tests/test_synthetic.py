"""Synthetic multi-domain demo data: determinism, exact layouts, encodings, domain shift."""

from __future__ import annotations

import filecmp
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from monai.data import load_decathlon_datalist
from PIL import Image

from medfound.data.synthetic import DEMO_DATASETS, write_demo_data
from medfound.data.synthetic.common import GENERATOR_VERSION
from medfound.data.synthetic.fundus import FUNDUS_COUNTS, FUNDUS_DOMAINS, render_fundus
from medfound.data.synthetic.polyp import POLYP_COUNTS, POLYP_DOMAINS
from medfound.data.synthetic.scgm import N_RATERS, SCGM_COUNTS, SCGM_SITES
from medfound.errors import ConfigError, MedfoundError
from medfound.transforms.intensity import gaussian_blur
from medfound.utils import make_rng


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _all_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------ determinism


def test_render_is_reproducible_per_case():
    a = render_fundus(make_rng(7, "fundus", "Domain3", "train", 2), FUNDUS_DOMAINS[2], "small")
    b = render_fundus(make_rng(7, "fundus", "Domain3", "train", 2), FUNDUS_DOMAINS[2], "small")
    c = render_fundus(make_rng(8, "fundus", "Domain3", "train", 2), FUNDUS_DOMAINS[2], "small")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.slow
def test_same_seed_writes_identical_bytes(demo_root, tmp_path):
    write_demo_data(tmp_path, size="small", seed=0)
    files = _all_files(demo_root)
    assert files == _all_files(tmp_path)
    assert len(files) > 1000
    mismatch = [str(f) for f in files if not filecmp.cmp(demo_root / f, tmp_path / f, shallow=False)]
    assert mismatch == []


def test_other_seed_changes_content(tmp_path):
    write_demo_data(tmp_path / "a", datasets=["scgm"], seed=0)
    write_demo_data(tmp_path / "b", datasets=["scgm"], seed=1)
    name = "site1-sc01-image.nii.gz"
    assert (tmp_path / "a/scgm" / name).read_bytes() != (tmp_path / "b/scgm" / name).read_bytes()


def test_manifest_and_readme_say_synthetic(demo_root):
    index = json.loads((demo_root / "demo_index.json").read_text())
    assert index["synthetic"] is True and set(index["datasets"]) == set(DEMO_DATASETS)
    for name in DEMO_DATASETS:
        manifest = json.loads((demo_root / name / "manifest.json").read_text())
        assert manifest["synthetic"] is True
        assert manifest["generator_version"] == GENERATOR_VERSION
        assert manifest["seed"] == 0 and manifest["size"] == "small"
        readme = (demo_root / name / "README.md").read_text()
        assert "SYNTHETIC" in readme and f"version {GENERATOR_VERSION}" in readme and "seed: 0" in readme
        # the manifest's checksums describe the files on disk
        import hashlib

        for rel, digest in manifest["files"].items():
            assert hashlib.sha256((demo_root / name / rel).read_bytes()).hexdigest() == digest


def test_bad_arguments_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown demo size 'huge'"):
        write_demo_data(tmp_path, size="huge")
    with pytest.raises(ValueError, match=r"unknown demo dataset\(s\) \['retina'\]"):
        write_demo_data(tmp_path, datasets=["retina"])
    assert issubclass(ConfigError, MedfoundError)


# ------------------------------------------------------------------ fundus (DoFE)


def test_fundus_layout_and_mask_encoding(demo_root):
    root = demo_root / "fundus"
    pattern = re.compile(r"Domain[1-4]/(train|test)/ROIs/(image|mask)/d[1-4]_(train|test)_\d{4}\.png")
    pngs = [str(p) for p in _all_files(root) if p.suffix == ".png"]
    assert all(pattern.fullmatch(p) for p in pngs)
    counts = FUNDUS_COUNTS["small"]
    assert len(pngs) == 4 * 2 * (counts["train"] + counts["test"])
    for domain in FUNDUS_DOMAINS:
        for split, n in counts.items():
            images = sorted((root / domain.name / split / "ROIs" / "image").glob("*.png"))
            masks = sorted((root / domain.name / split / "ROIs" / "mask").glob("*.png"))
            assert [p.name for p in images] == [p.name for p in masks] and len(images) == n
            for img_path, mask_path in zip(images[:3], masks[:3]):
                img, mask = Image.open(img_path), Image.open(mask_path)
                assert img.mode == "RGB" and mask.mode == "RGB"
                assert img.size == mask.size == (domain.size["small"],) * 2
                m = np.asarray(mask)
                assert set(np.unique(m)) <= {0, 128, 255}
                assert np.array_equal(m[..., 0], m[..., 1]) and np.array_equal(m[..., 0], m[..., 2])
                cup, disc = m[..., 0] == 0, m[..., 0] <= 128
                assert 0 < cup.sum() < disc.sum()
                # the cup lies inside the disc: no cup pixel touches background
                pad = np.pad(m[..., 0], 1, constant_values=255)
                neigh = np.stack([pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]])
                assert not (cup & (neigh == 255).any(0)).any()


def _fundus_by_domain(root: Path, split: str = "train"):
    for domain in FUNDUS_DOMAINS:
        folder = root / domain.name / split / "ROIs"
        pairs = [(_png(p).astype(float), _png(folder / "mask" / p.name)[..., 0])
                 for p in sorted((folder / "image").glob("*.png"))]
        yield domain.name, pairs


def _appearance(img: np.ndarray) -> np.ndarray:
    """Colour, contrast and sharpness features of an image (inside its non-black area)."""
    fov = img.sum(-1) > 30
    gray = img.mean(-1)
    detail = np.abs(gray - gaussian_blur(gray, 2.0, spatial_axes=(0, 1)))[fov].mean()
    return np.concatenate([img[fov].mean(0) / 255, [gray[fov].std() / 255, detail / 10, fov.mean()]])


def _nearest_centroid_accuracy(features: dict[str, list[np.ndarray]]) -> float:
    """Leave-one-out nearest-centroid accuracy of predicting the domain from appearance."""
    correct = total = 0
    names = list(features)
    for name in names:
        for i, f in enumerate(features[name]):
            centroids = {}
            for other in names:
                rest = [g for j, g in enumerate(features[other]) if not (other == name and j == i)]
                centroids[other] = np.mean(rest, axis=0)
            pred = min(centroids, key=lambda k: np.linalg.norm(f - centroids[k]))
            correct += pred == name
            total += 1
    return correct / total


def test_fundus_domains_differ_in_appearance_not_in_labels(demo_root):
    feats, disc_frac, cdr, cup_contrast = {}, {}, {}, {}
    for name, pairs in _fundus_by_domain(demo_root / "fundus"):
        feats[name] = [_appearance(img) for img, _ in pairs]
        disc_frac[name] = np.mean([(m <= 128).mean() for _, m in pairs])
        cdr[name] = np.mean([np.sqrt((m == 0).sum() / (m <= 128).sum()) for _, m in pairs])
        # cup contrast: green-channel brightness of the cup over the rim, in rim standard deviations
        cup_contrast[name] = np.mean([(np.median(img[..., 1][m == 0]) - np.median(img[..., 1][m == 128]))
                                      / img[..., 1][m == 128].std() for img, m in pairs])
    # appearance: a nearest-centroid classifier on colour/contrast/sharpness tells the domains apart
    assert _nearest_centroid_accuracy(feats) >= 0.9
    centroids = np.array([np.mean(f, 0)[:3] for f in feats.values()])
    pairwise = [np.abs(centroids[i] - centroids[j]).max() for i in range(4) for j in range(i + 1, 4)]
    assert min(pairwise) > 0.03  # at least ~8 grey levels apart in some channel
    # labels: the disc covers the same share of the image everywhere (within 10 %)
    d = np.array(list(disc_frac.values()))
    assert d.max() / d.min() < 1.10
    # cup-to-disc ratios stay in a clinical range, smaller in Domain3/4
    assert all(0.25 < v < 0.65 for v in cdr.values())
    assert max(cdr["Domain3"], cdr["Domain4"]) < min(cdr["Domain1"], cdr["Domain2"])
    # and the cup is low-contrast there: at most 60 % of Domain1's cup contrast
    assert max(cup_contrast["Domain3"], cup_contrast["Domain4"]) < 0.6 * cup_contrast["Domain1"]
    assert min(cup_contrast.values()) > 0  # but still brighter than the rim


# ------------------------------------------------------------------ polyp (PraNet)


def test_polyp_layout_and_masks(demo_root):
    root = demo_root / "polyp"
    domains = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert domains == sorted(d.name for d in POLYP_DOMAINS)
    n_polyps = []
    for domain in POLYP_DOMAINS:
        images = sorted((root / domain.name / "images").glob("*.png"))
        masks = sorted((root / domain.name / "masks").glob("*.png"))
        assert [p.name for p in images] == [p.name for p in masks] and len(images) == POLYP_COUNTS["small"]
        for img_path, mask_path in zip(images, masks):
            img, mask = Image.open(img_path), Image.open(mask_path)
            assert img.mode == "RGB" and mask.mode == "L"
            assert img.size == mask.size == domain.size["small"]
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
        manifest = json.loads((root / "manifest.json").read_text())
        n_polyps += [c["n_polyps"] for c in manifest["domains"][domain.name]["cases"]]
    assert set(n_polyps) <= {0, 1, 2} and {1, 2} <= set(n_polyps)


def test_polyp_domains_differ_in_appearance_not_in_labels(demo_root):
    root = demo_root / "polyp"
    feats, frac = {}, {}
    for domain in POLYP_DOMAINS:
        imgs = [_png(p).astype(float) for p in sorted((root / domain.name / "images").glob("*.png"))]
        masks = [_png(p) > 0 for p in sorted((root / domain.name / "masks").glob("*.png"))]
        feats[domain.name] = [_appearance(i) for i in imgs]
        frac[domain.name] = np.mean([m.mean() for m in masks])
    assert _nearest_centroid_accuracy(feats) >= 0.9
    f = np.array(list(frac.values()))
    assert f.min() > 0.02 and f.max() / f.min() < 1.8


def test_polyp_has_specular_highlights_on_polyps(demo_root):
    folder = demo_root / "polyp" / "Kvasir"
    on, off = [], []
    for img_path in sorted((folder / "images").glob("*.png")):
        img, mask = _png(img_path).astype(float), _png(folder / "masks" / img_path.name) > 0
        spec = img.min(-1) > 200  # near-white in every channel
        if mask.any():
            on.append(spec[mask].mean())
            off.append(spec[~mask].mean())
    assert np.mean(on) > 2 * np.mean(off) > 0


# ------------------------------------------------------------------ spinal cord (SCGM)


def test_scgm_layout_geometry_and_raters(demo_root):
    root = demo_root / "scgm"
    names = [p.name for p in _all_files(root) if p.name.endswith(".nii.gz")]
    pattern = re.compile(r"site[1-4]-sc\d{2}-(image|mask-r[1-4])\.nii\.gz")
    assert all(pattern.fullmatch(n) for n in names)
    n_subjects = int(SCGM_COUNTS["small"]["subjects"])
    assert len(names) == 4 * n_subjects * (1 + N_RATERS)
    for site in SCGM_SITES:
        image = nib.load(root / f"{site.name}-sc01-image.nii.gz")
        zooms = image.header.get_zooms()
        assert np.allclose(zooms, site.spacing, atol=1e-5)
        assert image.get_data_dtype() == np.int16
        masks = [nib.load(root / f"{site.name}-sc01-mask-r{r}.nii.gz") for r in range(1, N_RATERS + 1)]
        arrays = [np.asarray(m.dataobj) for m in masks]
        for m, arr in zip(masks, arrays):
            assert arr.shape == image.shape and np.allclose(m.affine, image.affine)
            assert set(np.unique(arr)) == {0, 1, 2}
        # raters agree mostly but not exactly
        gm = [a == 1 for a in arrays]
        dice = [2 * (gm[0] & g).sum() / (gm[0].sum() + g.sum()) for g in gm[1:]]
        assert all(0.75 < d < 1.0 for d in dice)
        # in physical space the flips in the affine cancel: the cord is where the affine says
        data = np.asarray(image.dataobj).astype(float)
        cord = arrays[0] > 0
        assert data[arrays[0] == 1].mean() > data[arrays[0] == 2].mean()  # GM brighter than WM (T2*)
        ring = (gaussian_blur(cord.astype(float), (3, 3), spatial_axes=(0, 1)) > 0.05) & ~cord
        assert data[ring].mean() > data[cord].mean()  # bright CSF around the cord


def test_scgm_sites_differ_in_spacing_and_intensity_not_in_anatomy(demo_root):
    manifest = json.loads((demo_root / "scgm" / "manifest.json").read_text())
    spacings = {tuple(v["spacing_mm"]) for v in manifest["sites"].values()}
    assert len(spacings) == 4 and {s[2] for s in spacings} == {2.5, 5.0}
    gm_area = [np.mean([c["gm_area_mm2"] for c in v["cases"]]) for v in manifest["sites"].values()]
    cord_area = [np.mean([c["cord_area_mm2"] for c in v["cases"]]) for v in manifest["sites"].values()]
    assert max(gm_area) / min(gm_area) < 1.25 and max(cord_area) / min(cord_area) < 1.25
    assert 50 < np.mean(cord_area) < 120 and 0.12 < np.mean(gm_area) / np.mean(cord_area) < 0.3
    p99 = []
    for site in SCGM_SITES:
        data = np.asarray(nib.load(demo_root / "scgm" / f"{site.name}-sc01-image.nii.gz").dataobj)
        p99.append(np.percentile(data, 99))
    assert max(p99) / min(p99) > 2.0  # intensity scales differ between scanners


def test_scgm_affines_include_flipped_orientations(demo_root):
    codes = {nib.aff2axcodes(nib.load(demo_root / "scgm" / f"{s.name}-sc01-image.nii.gz").affine)
             for s in SCGM_SITES}
    assert ("R", "A", "S") in codes and len(codes) >= 2


# ------------------------------------------------------------------ multi-task


def test_multitask_datalists_load_with_monai(demo_root):
    root = demo_root / "multitask"
    tasks = json.loads((root / "tasks.json").read_text())["tasks"]
    kinds = {t["kind"] for t in tasks}
    assert kinds == {"classification", "multilabel", "segmentation", "detection"}
    assert {t["modality"] for t in tasks} >= {"CT", "MR", "X-ray", "fluorescence microscopy"}
    assert [t["role"] for t in tasks].count("transfer") == 1
    for task in tasks:
        path = root / task["datalist"]
        for split in ("training", "validation"):
            items = load_decathlon_datalist(path, is_segmentation=task["kind"] == "segmentation",
                                            data_list_key=split)
            assert len(items) == task["counts"][split]
            for item in items:
                assert Path(item["image"]).is_file()
                if task["kind"] == "segmentation":
                    assert Path(item["label"]).is_file()


def test_multitask_tasks_labelled_per_image_have_four_times_the_images(demo_root):
    """Classification and multi-label pre-training tasks get IMAGE_LABEL_COUNT_FACTOR x the preset's
    images in both splits; every other task the preset's, and the transfer task its larger test split."""
    counts = {t["name"]: (t["counts"]["training"], t["counts"]["validation"])
              for t in json.loads((demo_root / "multitask" / "tasks.json").read_text())["tasks"]}
    assert counts == {
        "ct_abdomen_organs_seg": (40, 32), "ct_chest_nodule_cls": (160, 128), "mr_brain_lesion_seg": (40, 32),
        "microscopy_nuclei_seg": (40, 32), "microscopy_nuclei_det": (40, 32),
        "xray_chest_findings_mlc": (160, 128), "xray_chest_nodule_det": (40, 32),
        "microscopy_nuclei_phenotype_cls": (40, 64),
    }
    # the first 40 training images are the ones the 40-image collection had: each image's draw depends
    # only on (seed, task, split, index)
    from medfound.data.synthetic.multitask import MULTITASK_TASKS

    nodule = next(t for t in MULTITASK_TASKS if t.name == "ct_chest_nodule_cls")
    hu, label = nodule.render(make_rng(0, "multitask", nodule.name, "training", 39), 64)
    item = json.loads((demo_root / "multitask" / nodule.name / "datalist.json").read_text())["training"][39]
    assert np.array_equal(_read(str(demo_root / "multitask" / nodule.name / item["image"])), hu)
    assert item["label"] == label


def _read(path: str) -> np.ndarray:
    if path.endswith(".nii.gz"):
        return np.asarray(nib.load(path).dataobj)
    if path.endswith(".tif"):
        return tifffile.imread(path)
    return np.asarray(Image.open(path))


def test_multitask_labels_match_images(demo_root):
    root = demo_root / "multitask"
    tasks = {t["name"]: t for t in json.loads((root / "tasks.json").read_text())["tasks"]}
    for name, task in tasks.items():
        items = load_decathlon_datalist(root / task["datalist"], False, "training")
        n_cls = len(task["class_names"])
        labels = []
        for item in items:
            img = _read(item["image"]).astype(float)
            assert list(img.shape) == task["image_size"]
            if task["kind"] == "segmentation":
                lab = _read(str(root / name / item["label"]))
                assert lab.shape == img.shape and lab.max() < n_cls
                fg = lab > 0
                if fg.any() and (~fg).any():
                    labels.append(abs(img[fg].mean() - img[~fg].mean()) / (img.std() + 1e-9))
            elif task["kind"] == "detection":
                assert len(item["box"]) == len(item["label"])
                for x0, y0, x1, y1 in item["box"]:
                    assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
                    # brighter than the ring of pixels around the box
                    m = max(x1 - x0, y1 - y0) // 2 + 1
                    outer = img[max(0, y0 - m):y1 + m, max(0, x0 - m):x1 + m]
                    ring_mean = (outer.sum() - img[y0:y1, x0:x1].sum()) / (outer.size - (x1 - x0) * (y1 - y0))
                    labels.append(img[y0:y1, x0:x1].mean() > ring_mean)
            elif task["kind"] == "multilabel":
                assert len(item["label"]) == n_cls and set(item["label"]) <= {0, 1}
                labels.append(item["label"])
            else:
                assert 0 <= item["label"] < n_cls
                labels.append(item["label"])
        if task["kind"] == "segmentation":
            assert np.mean(labels) > 0.1  # foreground differs from background
        elif task["kind"] == "detection":
            assert np.mean(labels) > 0.9  # boxes sit on bright objects
        elif task["kind"] == "multilabel":
            assert 0 < np.mean(labels) < 1
        else:
            assert len(set(labels)) == n_cls  # every class occurs


def test_nuclei_detection_boxes_cover_each_nucleus(demo_root):
    root = demo_root / "multitask" / "microscopy_nuclei_det"
    item = json.loads((root / "datalist.json").read_text())["training"][0]
    img = tifffile.imread(root / item["image"]).astype(float)
    covered = np.zeros(img.shape, bool)
    for x0, y0, x1, y1 in item["box"]:
        covered[y0:y1, x0:x1] = True
    bright = img > np.percentile(img, 97)
    assert bright[covered].sum() / bright.sum() > 0.9  # nearly all bright pixels lie in some box


def test_ct_chest_nodules_are_larger_than_every_vessel(demo_root):
    """A nodule is a blob clearly larger than the vessel dots (issue 15: at 15-49 px, a third of the
    nodules were no larger than the vessels' bright area and the demo's pre-training did not learn the
    task); counted as the largest bright (> -400 HU) connected blob inside the lungs (air < -500 HU not
    connected to the image border, holes filled)."""
    from scipy import ndimage

    root = demo_root / "multitask" / "ct_chest_nodule_cls"
    datalist = json.loads((root / "datalist.json").read_text())
    largest = {0: [], 1: []}
    for item in datalist["training"] + datalist["validation"]:
        hu = np.asanyarray(nib.load(root / item["image"]).dataobj).astype(float)
        air, _ = ndimage.label(hu < -500)
        border = np.unique(np.r_[air[0], air[-1], air[:, 0], air[:, -1]])
        lungs = ndimage.binary_fill_holes((air > 0) & ~np.isin(air, border))
        blobs, n = ndimage.label(lungs & (hu > -400))
        largest[item["label"]].append(np.bincount(blobs.ravel())[1:].max() if n else 0)
    assert len(largest[0]) > 20 and len(largest[1]) > 20
    assert max(largest[0]) <= 10  # vessels: dots of a few pixels
    # nodules: >= 32 px in most images (the rest touch the lung wall, so they are not a separate blob):
    # 78 % of the 145 nodule images of this split; the previous generator's nodules: 31 % of its 36
    assert np.mean(np.array(largest[1]) >= 32) >= 0.75
