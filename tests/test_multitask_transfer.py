"""Transfer protocol: stratified subsets, the L-BFGS probe, encoders, and the full table + plot on a tiny config."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from _multitask_utils import TINY, memory_task, tiny_umedpt

from medfound.errors import ConfigError, WeightsError
from medfound.multitask.transfer import (
    DEFAULT_FRACTIONS,
    build_encoder_model,
    extract_embeddings,
    fit_linear_probe,
    linear_probe_head,
    run_transfer,
    stratified_subset,
)


def test_stratified_subset_keeps_class_shares_and_one_per_class():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    for fraction in DEFAULT_FRACTIONS:
        idx = stratified_subset(labels, fraction, seed=4)
        counts = np.bincount(labels[idx], minlength=3)
        expected = [max(1, round(fraction / 100 * n)) for n in (60, 30, 10)]
        assert counts.tolist() == expected and len(set(idx.tolist())) == len(idx)
    assert np.array_equal(stratified_subset(labels, 10, seed=1), stratified_subset(labels, 10, seed=1))
    assert not np.array_equal(stratified_subset(labels, 10, seed=1), stratified_subset(labels, 10, seed=2))
    assert len(stratified_subset(np.array([0, 1, -1, -1]), 100, 0)) == 2  # unlabelled samples are never drawn
    with pytest.raises(ConfigError):
        stratified_subset(labels, 0, 0)


def test_multilabel_subset_has_a_positive_for_every_label():
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 5)) < [0.5, 0.2, 0.05, 0.02, 0.3]).astype(int)
    idx = stratified_subset(labels, 1, seed=3, kind="multilabel")
    assert (labels[idx].sum(0) > 0).all() and len(idx) >= 2
    assert len(stratified_subset(np.zeros(50), 10, seed=0, kind="segmentation")) == 5


def test_linear_probe_fits_separable_data_and_reaches_the_optimum():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    y = torch.arange(60) % 3
    x = centres[y] + 0.3 * torch.randn(60, 4, generator=g)
    ty = torch.arange(30) % 3
    tx = centres[ty] + 0.3 * torch.randn(30, 4, generator=g)
    logits = fit_linear_probe(x, y, tx, "classification", 3, l2=1e-2)
    assert (logits.argmax(1) == ty).all()
    # optimality: the gradient of the regularised objective vanishes at the fitted weights
    _, params = fit_linear_probe(x, y, tx, "classification", 3, l2=1e-2, return_params=True)
    xs = (x.double() - params["mean"]) / params["std"]
    w, b = params["weight"].clone().requires_grad_(True), params["bias"].clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(xs @ w + b, y) + 0.5 * 1e-2 * (w * w).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-6 and b.grad.abs().max() < 1e-6
    ml = fit_linear_probe(x, torch.nn.functional.one_hot(y, 3), tx, "multilabel", 3)
    assert ((ml > 0).long() == torch.nn.functional.one_hot(ty, 3)).all()
    with pytest.raises(ConfigError):
        fit_linear_probe(x, y, tx, "segmentation", 3)


def _pretrain_folder(tmp_path, seed=3):
    model = tiny_umedpt(seed=seed, tasks=[{"name": "old", "kind": "classification", "num_classes": 2}])
    folder = tmp_path / "pretrained"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "network.json").write_text(json.dumps({"umedpt": TINY}))
    return model, folder


def test_encoders_from_folders_files_and_torchvision_weights(tmp_path):
    model, folder = _pretrain_folder(tmp_path)
    loaded, kwargs = build_encoder_model(folder)
    assert kwargs["embed_dim"] == TINY["embed_dim"] and len(loaded.heads) == 0
    for k, v in model.shared.state_dict().items():
        assert torch.equal(loaded.shared.state_dict()[k], v), k
    again, _ = build_encoder_model(folder / "model.pt", TINY)
    assert torch.equal(
        again.shared.state_dict()["squeezer.norm.weight"], model.shared.state_dict()["squeezer.norm.weight"]
    )
    torch.save(model.shared["encoder"].state_dict(), tmp_path / "swin.pth")  # torchvision-format encoder weights
    tv, tv_kwargs = build_encoder_model(f"torchvision:{tmp_path / 'swin.pth'}", TINY)
    assert tv.input_normalization == "imagenet" and tv_kwargs["input_normalization"] == "imagenet"
    for k, v in model.shared["encoder"].state_dict().items():
        assert torch.equal(tv.shared["encoder"].state_dict()[k], v)
    r1, _ = build_encoder_model("random", TINY, seed=1)
    r2, _ = build_encoder_model("random", TINY, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(r1.state_dict().values(), r2.state_dict().values()))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt"):
        build_encoder_model(tmp_path / "junk.pt", TINY)
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="shared"):
        build_encoder_model(tmp_path / "other.pt", TINY)


def test_transfer_protocol_writes_the_full_table_and_plot(tmp_path):
    _, folder = _pretrain_folder(tmp_path)
    task = memory_task("target", "classification", n=20, n_val=8, seed=11)
    result = run_transfer(
        task,
        {"pretrained": folder, "random": "random"},
        tmp_path / "out",
        repeats=1,
        seed=5,
        network=TINY,
        finetune={"epochs": 1, "min_iterations": 1, "batch_size": 4},
    )
    assert result["metric"] == "f1_macro" and result["n_test"] == 8
    keys = {(r["encoder"], r["mode"], r["fraction"]) for r in result["summary"]}
    assert keys == {
        (e, m, float(f)) for e in ("pretrained", "random") for m in ("linear", "finetune") for f in DEFAULT_FRACTIONS
    }
    n_by_fraction = {r["fraction"]: r["n_train"] for r in result["summary"] if r["encoder"] == "random"}
    assert n_by_fraction[1.0] == 2.0 and n_by_fraction[100.0] == 20.0  # one per class at 1 %
    assert all(0.0 <= r["mean"] <= 1.0 for r in result["summary"])
    with open(result["files"]["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 24 and {r["fraction_percent"] for r in rows} == {f"{f:g}" for f in DEFAULT_FRACTIONS}
    saved = json.loads((tmp_path / "out" / "transfer_results.json").read_text())
    assert len(saved["runs"]) == 24 and saved["summary"] == result["summary"]
    png = (tmp_path / "out" / "transfer_plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # the same seeds give the same linear-probe numbers (deterministic subsets and fits)
    again = run_transfer(
        task,
        {"random": "random"},
        tmp_path / "again",
        modes=["linear"],
        fractions=[10, 100],
        repeats=1,
        seed=5,
        network=TINY,
    )
    first = {r["fraction"]: r["mean"] for r in result["summary"] if r["encoder"] == "random" and r["mode"] == "linear"}
    assert {r["fraction"]: r["mean"] for r in again["summary"]} == {10.0: first[10.0], 100.0: first[100.0]}


def test_frozen_probe_for_segmentation_trains_the_head_only(tmp_path):
    task = memory_task("seg", "segmentation", n=6, n_val=4)
    result = run_transfer(
        task,
        {"random": "random"},
        tmp_path,
        modes=["linear"],
        fractions=[50, 100],
        repeats=1,
        network=TINY,
        finetune={"epochs": 1, "min_iterations": 2, "batch_size": 3},
    )
    assert [r["n_train"] for r in result["summary"]] == [3.0, 6.0]
    assert all("dice/fg" in r["metrics"] for r in result["runs"])


def test_transfer_bad_arguments(tmp_path):
    task = memory_task("target", "classification", n=4)
    with pytest.raises(ConfigError, match="modes"):
        run_transfer(task, {"r": "random"}, tmp_path, modes=["probe"], network=TINY)
    with pytest.raises(ConfigError, match="encoder"):
        run_transfer(task, {}, tmp_path, network=TINY)
    with pytest.raises(ConfigError, match="head_init"):
        run_transfer(task, {"r": "random"}, tmp_path, network=TINY, finetune={"head_init": "probe"})
    with pytest.raises(ConfigError, match=r"finetune.epochs must be an integer >= 1, got 0"):
        run_transfer(task, {"r": "random"}, tmp_path, network=TINY, finetune={"epochs": 0})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epoch'\] in finetune"):
        run_transfer(task, {"r": "random"}, tmp_path, network=TINY, finetune={"epoch": 2})
    with pytest.raises(ConfigError, match="fractions"):
        run_transfer(task, {"r": "random"}, tmp_path, network=TINY, fractions=[0])
    task["validation"] = []
    with pytest.raises(ConfigError, match="validation"):
        run_transfer(task, {"r": "random"}, tmp_path, network=TINY)


def test_standardising_head_computes_fc_of_standardised_embedding_and_keeps_plain_keys():
    from medfound.networks.umedpt import ClassificationHead

    plain = ClassificationHead(6, 3, dropout=0.0)
    assert set(plain.state_dict()) == {"fc.weight", "fc.bias"}
    head = ClassificationHead(6, 3, dropout=0.5, standardize=True).eval()
    assert set(head.state_dict()) == {"input_mean", "input_std", "fc.weight", "fc.bias"}
    head.input_mean.copy_(torch.arange(6.0))
    head.input_std.copy_(torch.full((6,), 0.01))
    x = torch.arange(6.0) + 0.01 * torch.randn(4, 6)
    expected = (x - torch.arange(6.0)) / 0.01 @ head.fc.weight.T + head.fc.bias
    assert torch.allclose(head(x), expected, atol=1e-4)
    for module in (plain, head):  # both forms stay scriptable (bundles export with TorchScript)
        assert torch.allclose(torch.jit.script(module)(x), module(x))


def test_linear_probe_head_reproduces_the_probe_and_lp_ft_starts_from_it(tmp_path):
    from medfound.multitask.datasets import TaskDataset
    from medfound.multitask.tasks import TaskSpec

    task = memory_task("target", "classification", n=12, n_val=6, seed=2)
    spec = TaskSpec.from_dict(task)
    model = tiny_umedpt(seed=4)
    train_ds = TaskDataset(spec.load_split("train"), lambda x: x, spec.name)
    val_ds = TaskDataset(spec.load_split("val"), lambda x: x, spec.name)
    feats = extract_embeddings(model, train_ds, "classification", torch.device("cpu"))
    val_feats = extract_embeddings(model, val_ds, "classification", torch.device("cpu"))
    y = torch.tensor([it["label"] for it in spec.load_split("train")])
    logits, params = fit_linear_probe(feats, y, val_feats, "classification", 2, return_params=True)
    head = linear_probe_head(model, spec, params)
    assert head.standardize and torch.allclose(head.input_std, params["std"].float())
    images = torch.stack([it["image"] for it in spec.load_split("val")]).repeat(1, 3, 1, 1)
    with torch.no_grad():
        out = model.eval()(images, task="target")
    assert torch.allclose(out, logits, atol=1e-4 * max(1.0, float(logits.abs().max())))
    linear_probe_head(model, spec, params)  # replaces the head of that name
    assert list(model.heads) == ["target"]
    with pytest.raises(ConfigError, match="classification"):
        linear_probe_head(model, TaskSpec.from_dict(memory_task("seg", "segmentation")), params)
    # LP-FT with a zero learning rate scores exactly what the probe scores
    common = {"network": TINY, "repeats": 1, "fractions": [100], "seed": 0}
    ft = {"epochs": 1, "min_iterations": 1, "batch_size": 4, "optimizer": {"name": "SGD", "lr": 0.0}}
    res = run_transfer(task, {"r": "random"}, tmp_path / "lpft", finetune=ft, **common)
    scores = {r["mode"]: r["score"] for r in res["runs"]}
    assert scores["finetune"] == pytest.approx(scores["linear"], abs=1e-6)
