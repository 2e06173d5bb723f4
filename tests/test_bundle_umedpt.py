"""The umedpt_foundation MONAI bundle: the model zoo's checks, and real runs at demo scale.

The fast tests train a tiny UMedPT for 2 iterations through ``monai.bundle`` on the synthetic
demo collection, then chain inference (images and a NIfTI volume), TorchScript export and the
zoo's verifications on the files that run wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import nibabel as nib
import numpy as np
import pytest
import torch
from _helpers import cause_chain

pytestmark = pytest.mark.usefixtures("single_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "umedpt_foundation"
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")
SCHEMA = ROOT / "bundles" / "meta_schema_20240725.json"
TINY = {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 4,
        "squeezer_channels": 16, "seg_hidden_channels": 16, "det_channels": 16, "det_num_convs": 1,
        "stochastic_depth_prob": 0.0}
#: demo-scale overrides of train.json (2 iterations, small batches)
DEMO_TRAIN = {"max_iterations": 2, "network_args": TINY, "train#dataloader#batch_size": 2,
              "validate#dataloader#batch_size": 2, "validate#dataloader#max_batches_per_task": 1}


def test_metadata_is_valid_against_the_schema_copy_offline():
    meta = json.loads(Path(META).read_text())
    jsonschema.validate(meta, json.loads(SCHEMA.read_text()))
    assert meta["schema"].endswith("/" + SCHEMA.name)
    assert meta["version"] in meta["changelog"] and "medfound" in meta["required_packages_version"]
    assert set(meta["network_data_format"]) == {"inputs", "outputs"}
    assert "image" in meta["network_data_format"]["inputs"] and "pred" in meta["network_data_format"]["outputs"]
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=META, filepath=str(SCHEMA))  # the file exists: nothing is downloaded


def test_generated_configs_are_the_committed_ones_and_agree_with_training_config():
    from medfound.multitask.bundle import BUNDLE_IDS, BUNDLE_TRAINER, _rename_refs, bundle_configs
    from medfound.multitask.training_config import training_config

    for name, config in bundle_configs().items():
        committed = json.loads((CONFIGS / name).read_text())
        assert committed == config, f"{name} is stale: python -m medfound.multitask.bundle {CONFIGS}"
    train = json.loads((CONFIGS / "train.json").read_text())
    base = _rename_refs(training_config(tasks="t.json", trainer=BUNDLE_TRAINER, validation={"interval": 1},
                                        output_dir="out", tensorboard=True, progress_bar=True), BUNDLE_IDS)
    # every trainer / optimiser / schedule / loader option is training_config's, under the zoo's ids
    changed = {"inferer", "max_iterations"}  # the zoo's train#trainer#max_epochs override replaces the iterations
    assert {k: v for k, v in train["train"]["trainer"].items() if k not in changed} == {
        k: v for k, v in base["trainer"].items() if k not in changed}
    assert train["train"]["trainer"]["max_iterations"] == "$None if @train#trainer#max_epochs else @max_iterations"
    assert train["train"]["dataloader"] == base["train_loader"]
    assert train["validate"]["dataloader"] == base["val_loader"]
    for key in ("optimizer", "head_optimizer", "lr_scheduler", "max_iterations", "seed", "device"):
        assert train[key] == base[key], key
    assert train["network_def"] == {"_target_": "medfound.networks.UMedPTFeatureNet.from_arguments",
                                    "arguments": "@network_args", "dropout": 0.0}
    inference = json.loads((CONFIGS / "inference.json").read_text())
    assert inference["network_def"] == train["network_def"]  # the same network, read from models/ at inference
    handlers = train["train"]["handlers"]
    assert handlers[0]["_target_"] == "medfound.handlers.StopOnNonFiniteLoss"  # first: before any other handler
    validation = next(h for h in handlers if h["_target_"] == "ValidationHandler")
    assert validation["interval"] == "@val_interval" and train["val_interval"] == 1


def test_slice_stack_inferer_runs_each_slice_as_an_image():
    from medfound.multitask.bundle import SliceStackInferer

    net = torch.nn.Conv2d(3, 2, 3, padding=1)
    volume = torch.rand(2, 3, 9, 7, 5)
    out = SliceStackInferer(slice_batch=3)(volume, net)
    assert out.shape == (2, 2, 9, 7, 5)
    for k in range(5):
        torch.testing.assert_close(out[..., k], net(volume[..., k]))
    image = torch.rand(1, 3, 9, 7)
    torch.testing.assert_close(SliceStackInferer()(image, net), net(image))


def test_verify_net_in_out_full_size_network_def_returns_the_embedding(tmp_path):
    from monai.bundle import verify_net_in_out

    # no models/ in bundle_root: the published architecture (Swin V2 tiny), a 512-channel embedding
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=str(CONFIGS / "inference.json"),
                      bundle_root=str(tmp_path), device="cpu")


@pytest.fixture(scope="module")
def trained_bundle(multitask_demo, tmp_path_factory):
    """bundle_root of a 2-iteration train.json run (tiny network) on the demo collection."""
    from monai.bundle import ConfigWorkflow

    root = tmp_path_factory.mktemp("umedpt_bundle")
    torch.set_num_threads(1)
    workflow = ConfigWorkflow(config_file=str(CONFIGS / "train.json"), meta_file=META, workflow_type="train",
                              bundle_root=str(root), dataset_dir=str(multitask_demo), **DEMO_TRAIN)
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.state.iteration == 2
    workflow.finalize()
    return root


def test_train_json_writes_weights_checkpoint_history_and_curves(trained_bundle):
    models = trained_bundle / "models"
    for name in ("model.pt", "last.pt", "encoder.pt", "network.json", "history.json", "curves.png"):
        assert (models / name).is_file(), name
    assert any((models / "tensorboard").iterdir())
    network = json.loads((models / "network.json").read_text())
    assert network["umedpt"] == TINY and len(network["tasks"]) == 7  # the demo's pre-training tasks
    from medfound.networks import UMedPT

    state = torch.load(models / "model.pt", weights_only=True)
    UMedPT(**network["umedpt"], tasks=network["tasks"]).load_state_dict(state)  # strict: a plain UMedPT state dict
    last = torch.load(models / "last.pt", weights_only=False)
    assert set(last) == {"trainer", "history"}


def _write_inputs(folder: Path, multitask_demo: Path) -> np.ndarray:
    folder.mkdir()
    for i, png in enumerate(sorted((multitask_demo / "xray_chest_findings_mlc").rglob("*.png"))[:2]):
        shutil.copyfile(png, folder / f"img{i}.png")
    volume = np.random.default_rng(0).normal(0, 100, (40, 48, 5)).astype(np.float32)
    affine = np.diag([0.7, 0.7, 3.0, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), str(folder / "vol.nii.gz"))
    return volume


def test_inference_json_writes_embeddings_and_task_outputs_of_images_and_a_volume(
        trained_bundle, multitask_demo, tmp_path):
    from monai.bundle import ConfigWorkflow

    inputs = tmp_path / "inputs"
    _write_inputs(inputs, multitask_demo)
    out = tmp_path / "out"
    workflow = ConfigWorkflow(config_file=str(CONFIGS / "inference.json"), meta_file=META, workflow_type="infer",
                              bundle_root=str(trained_bundle), dataset_dir=str(inputs), output_dir=str(out),
                              task="ct_abdomen_organs_seg")
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()
    png_shape = np.asarray(__import__("PIL.Image").Image.open(inputs / "img0.png")).shape[:2]
    assert np.load(out / "img0_embedding.npy").shape == (16,)
    assert np.load(out / "vol_embedding.npy").shape == (16, 5)  # one embedding per slice
    probs = np.load(out / "vol_task_ct_abdomen_organs_seg.npy")
    assert probs.shape == (4, 40, 48, 5)  # background + 3 organs, input size, every slice
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    assert np.load(out / "img1_task_ct_abdomen_organs_seg.npy").shape == (4, *png_shape)
    mask = nib.load(str(out / "vol_mask_ct_abdomen_organs_seg.nii.gz"))  # the input's geometry
    np.testing.assert_allclose(mask.affine, nib.load(str(inputs / "vol.nii.gz")).affine)
    np.testing.assert_array_equal(np.asarray(mask.dataobj), probs.argmax(0))

    # without a task: embeddings only
    plain = tmp_path / "plain"
    workflow = ConfigWorkflow(config_file=str(CONFIGS / "inference.json"), meta_file=META, workflow_type="infer",
                              bundle_root=str(trained_bundle), dataset_dir=str(inputs), output_dir=str(plain))
    workflow.initialize()
    workflow.run()
    assert sorted(p.name for p in plain.iterdir()) == ["img0_embedding.npy", "img1_embedding.npy", "vol_embedding.npy"]
    np.testing.assert_array_equal(np.load(plain / "vol_embedding.npy"), np.load(out / "vol_embedding.npy"))

    # the volume's embeddings are the network's on each preprocessed slice, with the trained weights
    parser = workflow.parser
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(trained_bundle / "models" / "model.pt", weights_only=True))
    net.eval()
    image = parser.get_parsed_content("preprocessing")({"image": str(inputs / "vol.nii.gz")})["image"]
    with torch.no_grad():
        expected = torch.stack([net(image.as_tensor()[None, ..., k])[0] for k in range(5)], dim=-1)
    np.testing.assert_allclose(np.load(out / "vol_embedding.npy"), expected.numpy(), atol=1e-5)


def test_inference_without_weights_says_how_to_get_them(multitask_demo, tmp_path):
    from monai.bundle import ConfigWorkflow

    from medfound.errors import WeightsError

    inputs = tmp_path / "inputs"
    _write_inputs(inputs, multitask_demo)
    workflow = ConfigWorkflow(config_file=str(CONFIGS / "inference.json"), meta_file=META, workflow_type="infer",
                              bundle_root=str(tmp_path), dataset_dir=str(inputs), network_args=TINY)
    workflow.initialize()
    with pytest.raises(Exception) as info:
        workflow.run()
    cause = cause_chain(info.value)[-1]
    assert isinstance(cause, WeightsError)
    assert "medfound convert-umedpt" in str(cause) and "configs/train.json" in str(cause)


def test_ckpt_export_traces_network_def_and_reproduces_eager_outputs(trained_bundle, tmp_path):
    from monai.bundle import ckpt_export

    # scripting fails (UMedPT.forward dispatches over task names and kinds with Python control flow);
    # the trace holds the padding and window partitioning of the traced size, so export at the deployment size
    ts = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts), ckpt_file=str(trained_bundle / "models" / "model.pt"),
                meta_file=META, config_file=str(CONFIGS / "inference.json"), bundle_root=str(trained_bundle),
                use_trace=True, input_shape=[1, 3, 64, 64])
    exported = torch.jit.load(str(ts))
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser["bundle_root"] = str(trained_bundle)
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(trained_bundle / "models" / "model.pt", weights_only=True))
    net.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_transfer_json_writes_table_and_plot_at_demo_scale(trained_bundle, multitask_demo):
    from monai.bundle import run

    run(config_file=str(CONFIGS / "transfer.json"), bundle_root=str(trained_bundle), dataset_dir=str(multitask_demo),
        **{"transfer#fractions": [10, 100], "transfer#repeats": 1,
           "transfer#finetune": {"epochs": 1, "min_iterations": 2, "max_iterations": 3, "batch_size": 4}})
    out = trained_bundle / "eval" / "transfer"
    assert (out / "transfer_plot.png").is_file()
    rows = (out / "transfer_summary.csv").read_text().splitlines()
    assert rows[0].startswith("task,data,metric,encoder,mode,fraction_percent,n_train")
    assert len(rows) == 1 + 2 * 2 * 2  # encoders x modes x fractions
    assert {r.split(",")[3] for r in rows[1:]} == {"umedpt", "random"}


DDP_WORKER = """
import sys, torch
from monai.bundle import ConfigWorkflow
configs, meta, root, data, overrides, timing = sys.argv[1:7]
import json
if timing == "slow_rank0":
    # rank 0 attaches its checkpoint saver (which removes stale temporaries in output_dir) 3 s late, and
    # network.json's temporary stays 5 s before its rename: a rank other than 0 writing network.json into
    # the same folder loses its temporary to rank 0's clean-up (a CI failure: rank 1, FileNotFoundError)
    import contextlib, os, time
    import medfound.handlers.checkpoint as checkpoint
    import medfound.utils.files as files
    attach, atomic_path = checkpoint.AtomicCheckpointSaver.attach, files.atomic_path
    def late_attach(self, engine):
        time.sleep(3 if os.environ["RANK"] == "0" else 0)
        return attach(self, engine)
    @contextlib.contextmanager
    def slow_atomic_path(path, *args, **kwargs):
        with atomic_path(path, *args, **kwargs) as tmp:
            yield tmp
            time.sleep(5 if str(path).endswith("network.json") else 0)
    checkpoint.AtomicCheckpointSaver.attach, files.atomic_path = late_attach, slow_atomic_path
wf = ConfigWorkflow(config_file=json.loads(configs), meta_file=meta, workflow_type="train", bundle_root=root,
                    dataset_dir=data, **json.loads(overrides))
wf.initialize()
wf.run()
import torch.distributed as dist
rank = dist.get_rank()
torch.save(wf.parser.get_parsed_content("network_def").state_dict(), f"{root}/rank{rank}.pt")
trainer = wf.parser.get_parsed_content("train#trainer")
print("rank", rank, "of", dist.get_world_size(), "iterations", trainer.state.iteration, "steps", trainer.shared_steps)
wf.finalize()
"""


@pytest.mark.slow
@pytest.mark.parametrize("timing", ["as_it_comes", "slow_rank0"])
def test_multi_gpu_train_json_under_torchrun_two_gloo_processes(multitask_demo, tmp_path, timing):
    """A real 2-process torchrun (gloo, CPU) of train.json + multi_gpu_train.json: ranks end equal; also
    when rank 0 starts late (only rank 0 writes into output_dir: its clean-up cannot hit another rank)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    configs = json.dumps([str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
           configs, META, str(tmp_path), str(multitask_demo), json.dumps({**DEMO_TRAIN, "max_iterations": 3}), timing]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    # torchrun interleaves both ranks' tracebacks: name the first failing rank's error lines, not only the tail
    errors = [line for line in done.stderr.splitlines() if "Error" in line or "[rank1]" in line][:60]
    assert done.returncode == 0, "\n".join(errors) + "\n...\n" + done.stderr[-3000:]
    assert "rank 0 of 2 iterations 3" in done.stdout and "rank 1 of 2 iterations 3" in done.stdout
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert set(r0) == set(r1)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"ranks differ in {k}"
    saved = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert all(torch.equal(saved[k], r0[k]) for k in r0)  # rank 0 wrote the final weights
    assert (tmp_path / "models" / "last.pt").is_file()
    assert json.loads((tmp_path / "models" / "network.json").read_text())["umedpt"] == DEMO_TRAIN["network_args"]


def test_inference_json_reads_a_dicom_series_folder(trained_bundle, tmp_path):
    from monai.bundle import ConfigWorkflow

    from medfound.io import write_dicom_series

    volume = np.random.default_rng(1).normal(0, 200, (40, 48, 5)).astype(np.int16)
    write_dicom_series(volume, tmp_path / "dicom" / "series1")
    out = tmp_path / "out"
    workflow = ConfigWorkflow(config_file=str(CONFIGS / "inference.json"), meta_file=META, workflow_type="infer",
                              bundle_root=str(trained_bundle), dataset_dir=str(tmp_path / "dicom"),
                              output_dir=str(out), task="ct_abdomen_organs_seg",
                              image_reader={"_target_": "medfound.io.DicomSeriesReader"})
    workflow.initialize()
    workflow.run()
    assert np.load(out / "series1_embedding.npy").shape == (16, 5)
    assert nib.load(str(out / "series1_mask_ct_abdomen_organs_seg.nii.gz")).shape == (40, 48, 5)


def test_zoo_max_epochs_override_replaces_the_iteration_count():
    from monai.bundle import ConfigParser

    lengths = []
    for override in ({}, {"train#trainer#max_epochs": 2}, {"max_epochs": 3}):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.json"))
        parser.update(override)
        lengths.append((parser.get_parsed_content("train#trainer#max_epochs"),
                        parser.get_parsed_content("train#trainer#max_iterations")))
    assert lengths == [(None, 100000), (2, None), (3, None)]
