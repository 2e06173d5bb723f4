"""Dataset adapters (fundus DoFE, polyp PraNet) on the synthetic demo data and on broken copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medfound.data.datalist import DATALIST_KEY, FUNDUS, POLYP, load_datalist, make_datalist
from medfound.data.fundus import decode_fundus_mask, fundus_datalist
from medfound.data.polyp import decode_polyp_mask, polyp_datalist
from medfound.errors import ConfigError, DatasetLayoutError, ImageReadError, LabelMismatchError, MedfoundError
from medfound.utils import atomic_write_json


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _mini_fundus(demo_root: Path, dest: Path, n: int = 2) -> Path:
    """A DoFE-layout copy with ``n`` cases per domain and split."""
    for split_dir in sorted((demo_root / "fundus").glob("Domain*/*/ROIs")):
        rel = split_dir.relative_to(demo_root / "fundus")
        for kind in ("image", "mask"):
            (dest / rel / kind).mkdir(parents=True)
            for f in sorted((split_dir / kind).iterdir())[:n]:
                shutil.copy(f, dest / rel / kind / f.name)
    return dest


def _mini_polyp(demo_root: Path, dest: Path, n: int = 2) -> Path:
    for domain in sorted(p for p in (demo_root / "polyp").iterdir() if p.is_dir()):
        for kind in ("images", "masks"):
            (dest / domain.name / kind).mkdir(parents=True)
            for f in sorted((domain / kind).iterdir())[:n]:
                shutil.copy(f, dest / domain.name / kind / f.name)
    return dest


# ------------------------------------------------------------------ fundus


def test_decode_fundus_mask_known_answer():
    mask = np.array([[255, 128, 0], [0, 128, 255]], np.uint8)
    assert decode_fundus_mask(mask).tolist() == [[0, 1, 2], [2, 1, 0]]
    with pytest.raises(DatasetLayoutError, match=r"m\.png: mask values \[77\]"):
        decode_fundus_mask(np.array([[0, 77]], np.uint8), source="m.png")
    # lenient: nearest code by midpoint thresholds
    assert decode_fundus_mask(np.array([[10, 70, 140, 200]], np.uint8), strict=False).tolist() == [[2, 1, 1, 0]]


def test_fundus_datalist_on_demo_data(demo_root, tmp_path):
    root = demo_root / "fundus"
    datalist = fundus_datalist(root, cache_dir=tmp_path / "cache")
    manifest = json.loads((root / "manifest.json").read_text())
    assert datalist["dataset"] == "fundus" and datalist["synthetic"] is True
    assert datalist["class_names"] == ["background", "rim", "cup"]
    assert datalist["regions"] == {"disc": [1, 2], "cup": [2]}
    assert datalist["domains"] == ["Domain1", "Domain2", "Domain3", "Domain4"]
    items = datalist[DATALIST_KEY]
    assert len(items) == datalist["num_items"] == 4 * (16 + 8)
    assert len({it["case_id"] for it in items}) == len(items)
    stats = {Path(c["image"]).stem: c for d in manifest["domains"].values() for c in d["cases"]}
    for it in items[::7]:
        label = _png(it["label"])
        assert label.ndim == 2 and set(np.unique(label)) <= {0, 1, 2}
        assert label.shape == _png(it["image"]).shape[:2]
        mask = _png(it["image"].replace("/image/", "/mask/"))[..., 0]
        assert np.array_equal(label == 2, mask == 0) and np.array_equal(label == 1, mask == 128)
        # the generator's own statistics: disc = rim + cup, cup = cup
        s = stats[Path(it["image"]).stem]
        assert abs((label > 0).mean() - s["disc_fraction"]) < 1e-6
        assert abs((label == 2).mean() - s["cup_fraction"]) < 1e-6
        assert it["split"] in ("train", "test") and it["case_id"].startswith(it["domain"])


def test_fundus_cache_is_deterministic_and_reused(demo_root, tmp_path):
    root = _mini_fundus(demo_root, tmp_path / "fundus")
    a = fundus_datalist(root, cache_dir=tmp_path / "a")
    b = fundus_datalist(root, cache_dir=tmp_path / "b")
    for x, y in zip(a["data"], b["data"]):
        assert Path(x["label"]).read_bytes() == Path(y["label"]).read_bytes()
    stamp = {it["label"]: Path(it["label"]).stat().st_mtime_ns for it in a["data"]}
    again = fundus_datalist(root, cache_dir=tmp_path / "a")
    assert again == a
    assert all(Path(p).stat().st_mtime_ns == t for p, t in stamp.items())  # not rewritten
    # a changed mask is decoded again
    mask = sorted(root.glob("Domain1/train/ROIs/mask/*.png"))[0]
    arr = _png(mask).copy()
    arr[:2] = 0
    Image.fromarray(arr).save(mask)
    label = next(it["label"] for it in fundus_datalist(root, cache_dir=tmp_path / "a")["data"]
                 if Path(it["image"]).stem == mask.stem)
    assert (_png(label)[:2] == 2).all()


def test_fundus_missing_domain_folder(demo_root, tmp_path):
    root = _mini_fundus(demo_root, tmp_path / "fundus")
    shutil.rmtree(root / "Domain3")
    with pytest.raises(DatasetLayoutError, match=r"missing domain folder\(s\) \[.*Domain3"):
        fundus_datalist(root)
    assert len(fundus_datalist(root, domains=["Domain1", "Domain2"])["data"]) == 2 * 2 * 2


def test_fundus_image_without_mask_names_the_file(demo_root, tmp_path):
    root = _mini_fundus(demo_root, tmp_path / "fundus")
    victim = sorted(root.glob("Domain2/test/ROIs/mask/*.png"))[0]
    victim.unlink()
    with pytest.raises(DatasetLayoutError, match=rf"1 image\(s\) without a mask.*{victim.name}"):
        fundus_datalist(root)
    shutil.rmtree(root / "Domain4/train/ROIs/mask")
    with pytest.raises(DatasetLayoutError, match=r"Domain4/train/ROIs/mask: missing mask folder"):
        fundus_datalist(root, domains=["Domain4"])


def test_fundus_bad_mask_values_and_shapes(demo_root, tmp_path):
    root = _mini_fundus(demo_root, tmp_path / "fundus")
    mask = sorted(root.glob("Domain1/train/ROIs/mask/*.png"))[0]
    arr = _png(mask).copy()
    arr[0, 0] = 77
    Image.fromarray(arr).save(mask)
    with pytest.raises(DatasetLayoutError, match=rf"{mask.name}: mask values \[77\]"):
        fundus_datalist(root, cache_dir=tmp_path / "c1")
    assert fundus_datalist(root, cache_dir=tmp_path / "c2", strict_values=False)["num_items"] == 16
    # colour mask
    arr[0, 0] = [0, 255, 0]
    Image.fromarray(arr).save(mask)
    with pytest.raises(DatasetLayoutError, match="colour mask"):
        fundus_datalist(root, cache_dir=tmp_path / "c3")
    # mask of the wrong size
    Image.fromarray(_png(mask)[:-3, :, 0]).save(mask)
    with pytest.raises(LabelMismatchError, match=rf"{mask.name}: mask is \d+x\d+ but its image"):
        fundus_datalist(root, cache_dir=tmp_path / "c4")


def test_fundus_corrupt_image_raise_or_skip(demo_root, tmp_path):
    root = _mini_fundus(demo_root, tmp_path / "fundus")
    image = sorted(root.glob("Domain3/test/ROIs/image/*.png"))[1]
    image.write_bytes(b"\x89PNG truncated")
    with pytest.raises(ImageReadError, match=rf"{image.name}: cannot read image"):
        fundus_datalist(root)
    datalist = fundus_datalist(root, on_error="skip")
    assert datalist["num_items"] == 15
    assert len(datalist["skipped"]) == 1 and image.name in datalist["skipped"][0]["case"]
    assert "ImageReadError" in datalist["skipped"][0]["error"]
    with pytest.raises(ConfigError, match="on_error"):
        fundus_datalist(root, on_error="ignore")
    with pytest.raises(DatasetLayoutError, match="not found"):
        fundus_datalist(tmp_path / "nowhere")


# ------------------------------------------------------------------ polyp


def test_decode_polyp_mask_known_answer():
    assert decode_polyp_mask(np.array([[0, 127, 128, 255]], np.uint8)).tolist() == [[0, 0, 1, 1]]
    with pytest.raises(DatasetLayoutError, match="0/1 mask"):
        decode_polyp_mask(np.array([[0, 1]], np.uint8), source="x.png")
    assert decode_polyp_mask(np.zeros((2, 2), np.uint8)).sum() == 0  # an empty mask is fine


def test_polyp_datalist_on_demo_data(demo_root, tmp_path):
    root = demo_root / "polyp"
    datalist = polyp_datalist(root, cache_dir=tmp_path / "cache")
    manifest = json.loads((root / "manifest.json").read_text())
    assert datalist["domains"] == sorted(manifest["domains"])
    assert datalist["regions"] == {"polyp": [1]} and datalist["class_names"] == ["background", "polyp"]
    assert datalist["synthetic"] is True
    items = datalist["data"]
    assert len(items) == sum(d["count"] for d in manifest["domains"].values())
    stats = {(c["image"].split("/")[0], Path(c["image"]).stem): c for d in manifest["domains"].values()
             for c in d["cases"]}
    for it in items[::5]:
        label = _png(it["label"])
        assert set(np.unique(label)) <= {0, 1}
        assert abs(label.mean() - stats[(it["domain"], Path(it["image"]).stem)]["polyp_fraction"]) < 1e-6


def test_polyp_layout_errors(demo_root, tmp_path):
    root = _mini_polyp(demo_root, tmp_path / "polyp")
    assert polyp_datalist(root)["num_items"] == 8
    with pytest.raises(DatasetLayoutError, match=r"missing domain folder\(s\) \[.*CVC-300"):
        polyp_datalist(root, domains=["Kvasir", "CVC-300"])
    extra = root / "Kvasir" / "masks" / "9999.png"
    shutil.copy(sorted((root / "Kvasir" / "masks").iterdir())[0], extra)
    with pytest.raises(DatasetLayoutError, match=r"1 mask\(s\) without an image.*9999\.png"):
        polyp_datalist(root)
    extra.unlink()
    mask = sorted((root / "ETIS-LaribPolypDB" / "masks").iterdir())[0]
    Image.fromarray((_png(mask) > 0).astype(np.uint8)).save(mask)  # 0/1 encoding
    with pytest.raises(DatasetLayoutError, match=rf"{mask.name}: mask values stay below 128"):
        polyp_datalist(root)
    skipped = polyp_datalist(root, on_error="skip", cache_dir=tmp_path / "c")
    assert skipped["num_items"] == 7 and mask.name in skipped["skipped"][0]["case"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetLayoutError, match="no centre folders"):
        polyp_datalist(empty)


def test_polyp_jpg_images_pair_with_png_masks(demo_root, tmp_path):
    root = _mini_polyp(demo_root, tmp_path / "polyp", n=1)
    image = next((root / "Kvasir" / "images").iterdir())
    Image.open(image).convert("RGB").save(image.with_suffix(".jpg"), quality=90)
    image.unlink()
    items = [it for it in polyp_datalist(root)["data"] if it["domain"] == "Kvasir"]
    assert len(items) == 1 and items[0]["image"].endswith(".jpg") and items[0]["label"].endswith(".png")


# ------------------------------------------------------------------ datalist format


def test_datalist_file_round_trip_and_monai(tmp_path):
    from monai.data import load_decathlon_datalist

    items = [{"image": str(tmp_path / "a.png"), "label": str(tmp_path / "a_l.png"), "domain": "X", "case_id": "a"},
             {"image": str(tmp_path / "b.png"), "domain": "Y", "case_id": "b"}]
    path = atomic_write_json(tmp_path / "out" / "datalist.json", make_datalist(POLYP, items, root="r"), sort_keys=True)
    loaded = load_datalist(path)
    assert loaded["data"] == sorted(items, key=lambda it: (it["domain"], it["case_id"]))
    assert loaded["regions"] == {"polyp": [1]} and loaded["domains"] == ["X", "Y"]
    assert load_decathlon_datalist(path, data_list_key="data") == loaded["data"]
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic write leaves no temp file
    with pytest.raises(ConfigError, match="lack 'image' or 'domain'"):
        make_datalist(FUNDUS, [{"image": "x"}])
    with pytest.raises(ConfigError, match="duplicate"):
        make_datalist(FUNDUS, [items[0], items[0]])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MedfoundError, match="not valid JSON"):
        load_datalist(tmp_path / "bad.json")
    with pytest.raises(DatasetLayoutError):
        load_datalist(tmp_path / "missing.json")
