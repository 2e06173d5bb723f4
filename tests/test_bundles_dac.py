"""The DAC bundles pass the MONAI model zoo's own checks, and run end to end on the demo data.

What the zoo's CI (``ci/verify_bundle.py``) checks, done here with MONAI's own functions:
``verify_metadata`` against the schema (the offline copy ``bundles/meta_schema_20240725.json``),
``verify_net_in_out`` on ``network_def`` (``network_data_format.inputs.image`` in,
``outputs.pred`` out), ``ckpt_export`` (TorchScript that reproduces the eager outputs) and
``ConfigWorkflow.check_properties`` for the train and inference workflows. The slow tests train
for two iterations with ``python -m monai.bundle run`` on the synthetic demo data, then evaluate
and infer from the files training wrote, and run ``multi_gpu_train.json`` under a real
``torchrun --nproc_per_node 2`` (gloo, CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"
SCHEMA = BUNDLES / "meta_schema_20240725.json"
NAMES = ["dac_fundus_segmentation", "dac_polyp_segmentation", "dac_scgm_segmentation"]

#: a small network for the checks that run it (the bundles' defaults are ResNet-50 at 256 px)
SMALL_NET = {"network_def#backbone": "resnet18", "network_def#base_channels": 8,
             "network_def#decoder_channels": 16, "network_def#low_level_channels": 8}
#: two iterations on 64 px images: a real run, in seconds
TINY_TRAIN = {"max_epochs": 1, "iterations_per_epoch": 2, "checkpoint_interval": 2, "log_interval": 1,
              "spatial_size": [64, 64], "batch_size_labeled": 2, "batch_size_unlabeled": 2,
              "num_workers": 0, **SMALL_NET}
TINY_INFER = {"spatial_size": [64, 64], **SMALL_NET}


def _copy_bundle(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(BUNDLES / name, root, ignore=shutil.ignore_patterns("models", "runs", "cache", "eval"))
    (root / "models").mkdir()
    return root


def _write(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def _bundle_run(root: Path, configs: list[str], timeout: int = 1800) -> subprocess.CompletedProcess:
    files = "[" + ",".join(repr(c) for c in configs) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--bundle_root", "."]
    done = subprocess.run(cmd, cwd=root, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


@pytest.mark.parametrize("name", NAMES)
def test_metadata_valid_against_schema(name, tmp_path):
    """``verify_metadata`` (jsonschema) passes offline; the files the zoo asks for exist."""
    from monai.bundle import verify_metadata

    root = BUNDLES / name
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    verify_metadata(meta_file=str(root / "configs" / "metadata.json"), filepath=str(SCHEMA))
    assert meta["version"] in meta["changelog"] and "medfound" in meta["required_packages_version"]
    fmt = meta["network_data_format"]
    assert set(fmt["inputs"]) == {"image"} and set(fmt["outputs"]) == {"pred"}
    for part in ("train.json", "evaluate.json", "inference.json", "multi_gpu_train.json", "logging.conf"):
        assert (root / "configs" / part).is_file(), part
    assert (root / "docs" / "README.md").is_file() and (root / "LICENSE").is_file()
    assert not list((root / "models").glob("*.pt")), "weights are never committed"


def test_metadata_rejected_without_required_key(tmp_path):
    """The schema check can fail: a metadata file without ``network_data_format`` is rejected."""
    from monai.bundle import verify_metadata

    meta = json.loads((BUNDLES / NAMES[0] / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]
    with pytest.raises(Exception, match="network_data_format"):
        verify_metadata(meta_file=_write(tmp_path / "metadata.json", meta), filepath=str(SCHEMA))


@pytest.mark.parametrize("name", NAMES)
def test_generated_configs_are_the_committed_ones(name):
    """train.json, evaluate.json, multi_gpu_train.json and demo.json are generated
    (``python -m medfound.dac.bundle_files bundles``): the committed files are exactly that output."""
    from medfound.dac.bundle_files import bundle_configs

    configs = bundle_configs(name)
    assert sorted(configs) == ["demo.json", "evaluate.json", "multi_gpu_train.json", "train.json"]
    for file, config in configs.items():
        committed = json.loads((BUNDLES / name / "configs" / file).read_text())
        assert committed == config, f"{name}/configs/{file} is stale: python -m medfound.dac.bundle_files bundles"


@pytest.mark.parametrize("name", NAMES)
def test_bundle_train_config_is_the_library_config(name, tmp_path):
    """The bundle's train.json is :func:`train_bundle_config` of the library's DACConfig: the same
    objects under the same ids, only the composition-time choices turned into switches."""
    from medfound.dac.bundle_configs import train_bundle_config
    from medfound.dac.bundle_files import BUNDLES as SPECS
    from medfound.dac.bundle_files import NETWORK_KWARGS, bundle_train_config
    from medfound.dac.config import DACConfig

    split = _write(tmp_path / "split.json", {
        "labeled": [{"image": "a.png", "label": "a_m.png"}], "unlabeled": [{"image": "b.png", "hidden_label": "c.png"}],
        "validation": [{"image": "d.png", "label": "d_m.png"}], "test": [], "class_names": ["background", "x"]})
    cfg = DACConfig.from_dict({"data": {"split": split, **SPECS[name]["data"]}, "network": {"kwargs": NETWORK_KWARGS}})
    library, bundle = train_bundle_config(cfg), bundle_train_config(name)
    for key in ("optimizer", "lr_scheduler", "max_iterations", "seed", "amp", "network", "checkpoint",
                "checkpoint_objects", "resume"):
        assert bundle[key] == library[key], key
    assert bundle["objective"] == {**library["objective"], "confidence_threshold": "@confidence_threshold",
                                   "rampup_iterations": "$int(round(@rampup_fraction * @max_iterations))"}
    assert bundle["rampup_fraction"] == cfg.method.rampup_fraction
    assert bundle["train"]["trainer"] == {**library["train"]["trainer"], "track_pseudo_labels": "@track_pseudo_labels"}
    assert bundle["train"]["augmentation"] == library["train"]["augmentation"]
    assert [h["_target_"] for h in bundle["train"]["handlers"]] == [
        h["_target_"] for h in library["train"]["handlers"]]
    assert bundle["train"]["handlers"][0] == library["train"]["handlers"][0]  # the non-finite loss stop, on every rank
    assert bundle["validate"]["postprocessing"] == library["validate"]["postprocessing"]
    assert bundle["validate"]["key_metric"] == library["validate"]["key_metric"]
    pre = library["train"]["preprocessing"]
    assert {k: bundle[k] for k in ("spatial_size", "in_channels", "intensity", "normalize_mean", "normalize_std",
                                   "label_values")} == {k: pre[k] for k in pre if k not in ("_target_", "num_classes",
                                                                                              "with_label")}


def test_bundle_configs_follow_a_changed_library_default(monkeypatch):
    """A default changed in the library's config reaches the generated bundle config (and the
    committed-file test then fails until the files are rewritten)."""
    import medfound.dac.bundle_files as bundle_files
    from medfound.dac.config import DACConfig

    class Changed(DACConfig):
        @classmethod
        def from_dict(cls, values=None):
            values = dict(values or {})
            values["optim"] = {"lr": 0.02}
            values["augment"] = {"style_mix_prob": 0.5}
            return DACConfig.from_dict(values)

    monkeypatch.setattr(bundle_files, "DACConfig", Changed)
    train = bundle_files.bundle_train_config("dac_polyp_segmentation")
    assert train["optimizer"]["lr"] == 0.02 and train["train"]["trainer"]["style_mix"]["prob"] == 0.5
    with pytest.raises(Exception, match="unknown DAC bundle"):
        bundle_files.bundle_configs("dac_unknown_segmentation")


@pytest.mark.parametrize("name", NAMES)
def test_verify_net_in_out(name):
    """The zoo's shape check: ``network_def`` maps ``inputs.image`` to ``outputs.pred`` (one tensor)."""
    from monai.bundle import verify_net_in_out

    configs = BUNDLES / name / "configs"
    verify_net_in_out(net_id="network_def", meta_file=str(configs / "metadata.json"),
                      config_file=str(configs / "inference.json"), device="cpu", **SMALL_NET)


@pytest.mark.parametrize("name", NAMES)
def test_ckpt_export_scripts_and_reproduces(name, tmp_path):
    """``ckpt_export`` scripts ``network_def`` from a state dict; the TorchScript equals eager."""
    from monai.bundle import ConfigParser, ckpt_export

    root = _copy_bundle(name, tmp_path)
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser.update(SMALL_NET)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    torch.save(net.state_dict(), root / "models" / "model.pt")
    ckpt_export(net_id="network_def", filepath=str(root / "models" / "model.ts"),
                ckpt_file=str(root / "models" / "model.pt"),
                meta_file=str(root / "configs" / "metadata.json"),
                config_file=str(root / "configs" / "inference.json"), **SMALL_NET)
    scripted = torch.jit.load(str(root / "models" / "model.ts"))
    x = torch.randn(1, parser.get_parsed_content("in_channels"), 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory) -> Path:
    """One cache folder (synthetic demo data, splits) shared by the tests that instantiate a bundle."""
    return tmp_path_factory.mktemp("dac_bundle_cache")


@pytest.mark.parametrize("name", [
    "dac_fundus_segmentation",
    pytest.param("dac_polyp_segmentation", marks=pytest.mark.slow),
    pytest.param("dac_scgm_segmentation", marks=pytest.mark.slow)])
@pytest.mark.parametrize("workflow_type, configs", [
    ("train", ["train.json"]), ("train", ["train.json", "multi_gpu_train.json"]),
    ("infer", ["inference.json"])])
def test_check_properties(name, workflow_type, configs, tmp_path, demo_cache):
    """As the zoo's CI: ``ConfigWorkflow.initialize()`` then ``check_properties()`` finds every
    required property (``bundle_root``, ``device``, ``network_def``, ``inferer``, ``dataset_dir``,
    ``train#trainer``, ``train#handlers``, ``val_interval``, ...) and no misnamed optional one."""
    from monai.bundle import ConfigWorkflow

    root = _copy_bundle(name, tmp_path)
    if configs == ["inference.json"]:  # inference needs weights: an untrained network's
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config(str(root / "configs" / "inference.json"))
        parser.update(TINY_INFER)
        torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")
    files = [str(root / "configs" / c) for c in configs]
    overrides = {**(TINY_INFER if configs == ["inference.json"] else TINY_TRAIN),
                 "bundle_root": str(root), "cache_dir": str(demo_cache)}
    if "multi_gpu_train.json" in configs:  # initialize would start a process group: torchrun's test does
        overrides["initialize"] = ["$@checkpoint.attach(@train#trainer)"]
    workflow = ConfigWorkflow(config_file=files if len(files) > 1 else files[0],
                              meta_file=str(root / "configs" / "metadata.json"),
                              logging_file=str(root / "configs" / "logging.conf"),
                              workflow_type=workflow_type, **overrides)
    workflow.initialize()
    assert workflow.check_properties() == []


def test_inference_without_weights_says_how_to_get_them(tmp_path):
    """Inference with no ``models/model.pt`` stops with an error naming the train command."""
    from medfound.dac.bundle_outputs import require_weights

    with pytest.raises(Exception, match="configs/train.json") as info:
        require_weights(tmp_path / "models" / "model.pt",
                        train_command="python -m monai.bundle run --config_file configs/train.json")
    assert "model.pt" in str(info.value)


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


@pytest.mark.slow
def test_fundus_train_evaluate_infer_chain(tmp_path):
    """Train 2 iterations on the demo data, evaluate on the held-out domain, infer: masks at input size."""
    root = _copy_bundle("dac_fundus_segmentation", tmp_path)
    tiny = _write(tmp_path / "tiny.json", TINY_TRAIN)
    _bundle_run(root, ["configs/train.json", tiny])
    run_dir = root / "runs" / "demo_dac_test-Domain4"
    for produced in ("last.pt", "model.pt", "curves.png", "training_log.jsonl"):
        assert (run_dir / produced).is_file(), produced
    assert (root / "models" / "model.pt").is_file()
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1

    done = _bundle_run(root, ["configs/train.json", "configs/evaluate.json", tiny])
    assert "held-out domain Domain4" in done.stdout and "Domain4 (n=" in done.stdout
    summary = json.loads((run_dir / "evaluation" / "test.json").read_text())
    assert summary  # per-domain Dice written next to the run

    tiny_infer = _write(tmp_path / "tiny_infer.json", TINY_INFER)
    _bundle_run(root, ["configs/inference.json", tiny_infer])
    inputs = sorted((root / "cache").glob("demo_small_seed0/fundus/Domain4/test/ROIs/image/*.png"))
    outputs = sorted((root / "eval").glob("*_seg.png"))
    assert inputs and len(outputs) == len(inputs)
    for image, mask in zip(inputs, outputs):
        assert mask.name == image.stem + "_seg.png" and _png_size(mask) == _png_size(image)
        from PIL import Image

        assert set(np.unique(np.asarray(Image.open(mask)))) <= {0, 1, 2}


@pytest.mark.slow
def test_inference_refuses_to_run_without_weights(tmp_path):
    """The real inference config, with no weights, fails with the train command in the message."""
    root = _copy_bundle("dac_polyp_segmentation", tmp_path)
    files = "['configs/inference.json']"
    done = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", files,
                           "--bundle_root", "."], cwd=root, env=_env(), capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode != 0
    assert "configs/train.json" in done.stderr and "model.pt" in done.stderr


class RankRecord:
    """Test instrument run inside each ``torchrun`` process: records what this rank trained on.

    Per iteration, a fingerprint of each labelled image of the batch this rank drew (its sum); at
    the end, this rank's id, the world size, the loader's shard and a hash of the network's state,
    written to ``<path>_rank<r>.json``. ``stop_at`` ends training after that iteration (as a kill).
    """

    def __init__(self, path: str, network: torch.nn.Module, loader, stop_at: int = 0) -> None:
        self.path, self.network, self.loader, self.stop_at = path, network, loader, int(stop_at)
        self.fingerprints: list[list[float]] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_STARTED, self._batch)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._stop)
        engine.add_event_handler(Events.COMPLETED, self._write)
        engine.add_event_handler(Events.TERMINATE, self._write)

    def _batch(self, engine) -> None:
        images = engine.state.batch["labeled"]["image"]
        self.fingerprints.append([round(float(x.sum()), 3) for x in images])

    def _stop(self, engine) -> None:
        if self.stop_at and engine.state.iteration == self.stop_at:
            engine.terminate()

    def _write(self, engine) -> None:
        import hashlib

        from medfound.utils.devices import rank, world_size

        digest = hashlib.sha256()
        for name, value in sorted(self.network.state_dict().items()):
            digest.update(name.encode() + value.detach().cpu().contiguous().numpy().tobytes())
        record = {"rank": rank(), "world_size": world_size(), "loader_rank": self.loader.rank,
                  "loader_world_size": self.loader.world_size, "iteration": engine.state.iteration,
                  "fingerprints": self.fingerprints, "state_sha256": digest.hexdigest()}
        Path(f"{self.path}_rank{rank()}.json").write_text(json.dumps(record))


def _torchrun(root: Path, configs: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    files = "[" + ",".join(repr(c) for c in configs) + "]"
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "monai.bundle", "run", "--config_file", files, "--bundle_root", "."]
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def _network_state(path: Path, key: str | None = "network") -> dict[str, torch.Tensor]:
    state = torch.load(path, weights_only=True, map_location="cpu")
    return state[key] if key else state


@pytest.mark.slow
def test_multi_gpu_train_under_torchrun_gloo(tmp_path):
    """``multi_gpu_train.json`` under a real ``torchrun --nproc_per_node 2`` (gloo, CPU).

    Both ranks train, each on its own shard of every global batch; they end with identical
    weights; only rank 0 writes (one ``last.pt``, no temporaries); a run stopped after iteration 2
    and started again resumes from ``last.pt`` to the same weights as an uninterrupted run.
    """
    from medfound.dac.bundle_data import demo_folder

    cache = tmp_path / "cache"
    demo_folder("fundus", cache)  # the demo data once, before the three runs

    def run(name: str, stop_at: int) -> tuple[Path, list[dict]]:
        root = tmp_path / name / "dac_fundus_segmentation"
        if not root.is_dir():  # the second "killed" run starts again in the same bundle folder
            _copy_bundle("dac_fundus_segmentation", tmp_path / name)
        record = str(tmp_path / name / "record")
        override = {**TINY_TRAIN, "max_epochs": 2, "checkpoint_interval": 2, "cache_dir": str(cache),
                    "record": {"_target_": "test_bundles_dac.RankRecord", "path": record,
                               "network": "@network", "loader": "@train#dataloader", "stop_at": stop_at},
                    "run": ["$@record.attach(@train#trainer)", "$@train#trainer.run()"]}
        _torchrun(root, ["configs/train.json", "configs/multi_gpu_train.json",
                         _write(tmp_path / name / "tiny.json", override)])
        records = [json.loads(Path(f"{record}_rank{r}.json").read_text()) for r in (0, 1)]
        return root / "runs" / "demo_dac_test-Domain4", records

    full_dir, full = run("uninterrupted", 0)
    assert [(r["rank"], r["world_size"], r["loader_rank"], r["loader_world_size"]) for r in full] == [
        (0, 2, 0, 2), (1, 2, 1, 2)]
    assert full[0]["iteration"] == full[1]["iteration"] == 4
    # sharded: at every iteration the two ranks drew different labelled images
    for a, b in zip(full[0]["fingerprints"], full[1]["fingerprints"], strict=True):
        assert len(a) == len(b) == TINY_TRAIN["batch_size_labeled"] and a != b
    assert full[0]["state_sha256"] == full[1]["state_sha256"]  # DDP kept the ranks identical
    assert sorted(p.name for p in full_dir.glob("*.pt")) == ["best_model.pt", "last.pt", "model.pt"]
    assert not [p for p in full_dir.rglob("*") if ".tmp" in p.name]
    assert len(list((full_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1  # rank 0's only

    # stopped after iteration 2 (checkpoint at 2), then run again: resumes to iteration 4
    run("killed", 2)
    killed_dir, resumed = run("killed", 0)
    assert resumed[0]["iteration"] == 4 and resumed[0]["fingerprints"] == full[0]["fingerprints"][2:]
    assert resumed[0]["state_sha256"] == resumed[1]["state_sha256"] == full[0]["state_sha256"]
    a, b = _network_state(full_dir / "last.pt"), _network_state(killed_dir / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _untrained_weights(root: Path) -> None:
    """``models/model.pt`` from an untrained ``network_def`` (geometry checks need no training)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser.update(TINY_INFER)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), root / "models" / "model.pt")


@pytest.mark.slow
def test_scgm_inference_restacks_volumes_with_input_affine(tmp_path):
    """SCGM inference on NIfTI volumes: one mask volume per input, segmented slice by slice,
    re-stacked with the input's shape and affine."""
    import nibabel as nib

    from medfound.data.synthetic import write_scgm_demo

    root = _copy_bundle("dac_scgm_segmentation", tmp_path)
    _untrained_weights(root)
    data = tmp_path / "volumes"
    write_scgm_demo(data, size="small", seed=0)
    volumes = sorted(data.glob("site4-sc*-image.nii.gz"))[:2]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for v in volumes:
        shutil.copy(v, inputs / v.name)
    override = {**TINY_INFER, "dataset_dir": str(inputs), "cache_dir": str(tmp_path / "cache")}
    _bundle_run(root, ["configs/inference.json", _write(tmp_path / "o.json", override)])
    for v in volumes:
        out = root / "eval" / v.name.replace(".nii.gz", "_seg.nii.gz")
        image, mask = nib.load(v), nib.load(out)
        assert mask.shape == image.shape
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}


@pytest.mark.slow
@pytest.mark.dicom
def test_scgm_inference_on_dicom_series_keeps_series_geometry(tmp_path):
    """SCGM inference on a DICOM series, with weights from a (2-iteration) training run of the
    bundle: the saved mask has the series' shape, affine and spacing as ``DicomSeriesReader``
    reads them, class indices only (the argmax of the network's inverted logits), and the same
    logits and labels, voxel for voxel in world space, as inference on the NIfTI volume the series
    was written from."""
    import nibabel as nib

    from medfound.io import DicomSeriesReader, write_dicom_series

    root = _copy_bundle("dac_scgm_segmentation", tmp_path)
    _bundle_run(root, ["configs/train.json", _write(tmp_path / "tiny.json", TINY_TRAIN)])
    assert (root / "models" / "model.pt").is_file()

    # the demo's held-out volume (site4, written by the training run), as a DICOM series; its
    # NIfTI affine is left-handed, so the series is read back with the slice order reversed
    volume = sorted((root / "cache").glob("demo_small_seed0/scgm/site4-sc*-image.nii.gz"))[0]
    source = nib.load(volume)
    series, nifti = tmp_path / "series" / "case01", tmp_path / "nifti"
    write_dicom_series(np.asarray(source.dataobj), series, source.affine, modality="MR")
    nifti.mkdir()
    shutil.copy(volume, nifti / "case01.nii.gz")
    reader = DicomSeriesReader()
    voxels, meta = reader.get_data(reader.read(series))

    # the bundle's masks, and (argmax off, float output) the inverted class logits they come from:
    # a 2-iteration network may label every voxel background, its logits still vary voxel by voxel
    logits = {"postprocessing#transforms#1#argmax": False, "postprocessing#transforms#2#output_dtype": "$numpy.float32",
              "output_postfix": "logits"}
    for folder in (series.parent, nifti):
        for extra in ({}, logits):
            override = {**TINY_INFER, **extra, "dataset_dir": str(folder),
                        "output_dir": str(tmp_path / "eval" / folder.name)}
            _bundle_run(root, ["configs/inference.json", _write(tmp_path / "o.json", override)])
    out = {(where, kind): nib.load(tmp_path / "eval" / where / f"case01_{kind}.nii.gz")
           for where in ("series", "nifti") for kind in ("seg", "logits")}
    from_dicom = out["series", "seg"]

    assert from_dicom.shape == voxels.shape == source.shape
    np.testing.assert_allclose(from_dicom.affine, meta["affine"], atol=1e-4)
    np.testing.assert_allclose(from_dicom.header.get_zooms(), meta["spacing"], atol=1e-5)
    assert from_dicom.affine[2, 2] < 0 < source.affine[2, 2]  # the geometry is the series', not the NIfTI's
    mask = np.asarray(from_dicom.dataobj)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2}
    scores = np.asarray(out["series", "logits"].dataobj)
    assert scores.shape == (*source.shape, 3) and np.ptp(scores) > 0
    np.testing.assert_array_equal(mask, scores.argmax(-1))  # the mask is the argmax of the network's classes
    # the same world geometry, logits and labels as from the NIfTI volume (in canonical orientation)
    for kind in ("seg", "logits"):
        a, b = nib.as_closest_canonical(out["series", kind]), nib.as_closest_canonical(out["nifti", kind])
        np.testing.assert_allclose(a.affine, b.affine, atol=1e-4)
        np.testing.assert_allclose(np.asarray(a.dataobj), np.asarray(b.dataobj), rtol=1e-4, atol=1e-4)


def test_readme_main_job_names_this_bundle():
    """The README's first set-up command runs the DAC fundus bundle (train, then evaluate) with
    config files that exist and merge into configs MONAI's parser reads."""
    import re

    from monai.bundle import ConfigParser

    setup = (ROOT / "README.md").read_text(encoding="utf-8").split("```bash\n", 1)[1].split("```", 1)[0]
    first = setup.strip().splitlines()[0]
    lists = re.findall(r'python -m monai\.bundle run --config_file "(\[[^"]+\])"', first)
    assert len(lists) == 2 and "evaluate.json" in lists[1]
    for files in lists:
        paths = [ROOT / f.strip("'") for f in files.strip("[]").split(",")]
        assert all(p.is_file() for p in paths), paths
        parser = ConfigParser()
        parser.read_config([str(p) for p in paths])
        assert parser["network_def"]["backbone"] == "resnet18"
        assert parser["max_epochs"] * parser["iterations_per_epoch"] <= 200  # demo scale


@pytest.mark.slow
def test_fundus_demo_trains_both_sub_models_and_both_auxiliary_tasks(tmp_path):
    """The fundus bundle's demo as the README runs it (synthetic, seed 0, 200 iterations at 64 px).

    With the rotation head on the decoder (the default before ``rotation_layer``) sub-model B
    labelled every pixel background in this run, on the labelled domain too: its pseudo labels
    on the unlabelled domains had disc Dice 0.000 in every epoch (seeds 0, 1 and 2), so A was
    trained on all-background cross pseudo labels. Now B's pseudo labels find the disc on both
    unlabelled domains, and both auxiliary tasks are above their chance level.
    """
    root = _copy_bundle("dac_fundus_segmentation", tmp_path)
    _bundle_run(root, ["configs/train.json", "configs/demo.json"])
    run_dir = root / "runs" / "demo_dac_test-Domain4"
    quality = [json.loads(line) for line in (run_dir / "pseudo_labels.jsonl").read_text().splitlines()]
    final = quality[-1]["pseudo_labels"]
    for sub in ("a", "b"):
        disc = {k: v["dice"] for k, v in final.items() if k.endswith(f"|{sub}|disc")}
        assert sorted(disc) == [f"Domain2|{sub}|disc", f"Domain3|{sub}|disc"], final
        assert min(disc.values()) > 0.3, (sub, final)
    log = [json.loads(line) for line in (run_dir / "training_log.jsonl").read_text().splitlines()]
    assert log[-1]["aux_rot_acc"] > 0.35, log[-1]  # chance 0.25
    assert log[-1]["aux_mask_iou"] > log[-1]["aux_mask_iou_const"], log[-1]
