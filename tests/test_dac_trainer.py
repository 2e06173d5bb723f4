"""DAC trainer: what one iteration updates, the targets it trains on, baseline switches, reproducible data,
exact resume."""

from __future__ import annotations

import copy
import doctest
import functools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _dac_helpers import disc_cup_item, tiny_config, tiny_network, write_tiny_split

import medfound.dac.data as data_mod
import medfound.dac.selection as selection_mod
from medfound.dac.config import METHODS
from medfound.dac.data import CoTrainingLoader, StreamBatchSampler
from medfound.dac.model import DACModel
from medfound.dac.objective import DACObjective
from medfound.dac.trainer import DACTrainer
from medfound.dac.workflow import run_workflow, train, training_parser, training_summary

REGIONS = {"disc": [1, 2], "cup": [2]}


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.mark.parametrize("module", [data_mod, selection_mod])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def make_trainer(method: str, iterations: int = 1, seed: int = 0, **options) -> DACTrainer:
    lab = [disc_cup_item(i) for i in range(4)]
    unl = [disc_cup_item(100 + i, domain=f"D{2 + i % 2}") for i in range(6)]
    loader = CoTrainingLoader(lab, unl, batch_size_labeled=2, batch_size_unlabeled=3, seed=seed)
    model = DACModel(tiny_network(), method=method)
    optimizer = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)  # a factory, as configs give it
    return DACTrainer(
        "cpu", 1, loader, model, optimizer, DACObjective(rampup_iterations=0, confidence_threshold=0.0),
        epoch_length=iterations, rotation={"side_range": (0.25, 0.5), "align": 8}, seed=seed,
        regions=REGIONS, track_pseudo_labels=True, **options,
    )


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_one_dac_iteration_updates_both_sub_models_and_all_heads():
    trainer = make_trainer("dac")
    net = trainer.network
    parts = {"model_a": net.model_a, "model_b": net.model_b, **net.training_heads()}
    assert set(parts) == {"model_a", "model_b", "projector_a", "projector_b", "mask_head", "rotation_head"}
    before = {name: _snapshot(m) for name, m in parts.items()}
    trainer.run()
    out = trainer.state.output
    assert set(out) >= {"loss", "sup", "pseudo", "feat", "aux_mask", "aux_rot", "rampup"}
    assert out["aux_rot"] == pytest.approx(out["aux_rot"]) and out["aux_rot"] > 0 and out["aux_mask"] > 0
    for name, module in parts.items():
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} received no gradient"
        changed = [not torch.equal(before[name][k], p) for k, p in module.named_parameters()]
        assert all(changed), f"{name}: {sum(changed)}/{len(changed)} parameters changed"
    # the unlabelled items carry labels: pseudo-label counts per (domain, model, region) were reported
    keys = set(out["pseudo_counts"])
    assert {k[1] for k in keys} == {"a", "b"} and {k[2] for k in keys} == {"disc", "cup"}


def _inputs_seen(trainer: DACTrainer) -> dict[str, list[torch.Tensor]]:
    seen: dict[str, list[torch.Tensor]] = {"a": [], "b": []}
    for name, model in trainer.network.sub_models().items():
        # the trainer calls forward_features (no module hooks), so hook the first conv: it sees the images
        model.backbone.conv1.register_forward_pre_hook(
            lambda _m, args, name=name: seen[name].append(args[0].detach().clone()))
    return seen


@pytest.mark.parametrize("method", ["cps", "dac_no_aux", "dac_no_feat", "dac", "fixmatch", "supervised"])
def test_baseline_switches_disable_their_parts(method):
    trainer = make_trainer(method)
    comp = METHODS[method]
    seen = _inputs_seen(trainer)
    trainer.run()
    out = trainer.state.output
    expected = {"sup"} | ({"pseudo"} if comp.pseudo else set()) | ({"feat"} if comp.feature else set()) \
        | ({"aux_mask", "aux_mask_iou", "aux_mask_iou_const"} if comp.aux_mask else set()) \
        | ({"aux_rot", "aux_rot_acc"} if comp.aux_rotation else set())
    assert {k for k in out if k not in ("loss", "rampup", "pseudo_counts")} == expected
    net = trainer.network
    params_with_grad = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert params_with_grad == {n for n, _ in net.named_parameters()}  # every existing part is trained
    if method == "cps":
        assert not any(n.startswith(("projector", "mask_head", "rotation_head")) for n, _ in net.named_parameters())
    if comp.two_models:
        (xa,), (xb,) = [x for x in seen["a"] if x.shape[0] == 5], [x for x in seen["b"] if x.shape[0] == 5]
        assert torch.equal(xa[:2], xb[:2])  # same labelled images
        # B sees A's strong view with a rotated region only when the rotation task is on
        assert torch.equal(xa[2:], xb[2:]) != comp.aux_rotation
    else:
        assert net.model_b is None
    if method == "supervised":
        assert [x.shape[0] for x in seen["a"]] == [2]  # labelled batch only, no unlabelled forward pass


def test_rotated_region_is_the_only_difference_between_the_views_of_a_and_b():
    trainer = make_trainer("dac", aux_rotation_view="strong")
    seen = _inputs_seen(trainer)
    trainer.run()
    xa = [x for x in seen["a"] if x.shape[0] == 5][0][2:]
    xb = [x for x in seen["b"] if x.shape[0] == 5][0][2:]
    for i in range(3):
        diff = (xa[i] != xb[i]).any(0)
        if not diff.any():
            continue  # k = 0 (or a symmetric region): nothing rotated
        ys, xs = torch.nonzero(diff, as_tuple=True)
        y0, x0 = int(ys.min()) // 8 * 8, int(xs.min()) // 8 * 8
        side = max(int(ys.max()) - y0, int(xs.max()) - x0) + 1
        side = -(-side // 8) * 8
        region = (slice(None), slice(y0, y0 + side), slice(x0, x0 + side))
        assert any(torch.equal(xb[i][region], torch.rot90(xa[i][region], k, (1, 2))) for k in (1, 2, 3))


class _StepRecord:
    """What one real DACTrainer step computed, recorded while it runs (every recorded call is the real one).

    ``forward``: per sub-model, the inputs and logits of each ``forward_features`` call and
    whether gradients were on (off: the weak view); ``strong``: the photometric strong view;
    ``pseudo`` / ``mixed_region`` / ``rotation``: the arguments the objective's losses got.
    """

    def __init__(self, trainer: DACTrainer) -> None:
        self.forward: dict[str, list[dict]] = {"a": [], "b": []}
        self.strong: list[torch.Tensor] = []
        self.pseudo: list[tuple] = []
        self.mixed_region: list[tuple] = []
        self.rotation: list[tuple] = []
        for name, model in trainer.network.sub_models().items():
            model.forward_features = self._recording(model.forward_features, self.forward[name])
        augment = trainer.strong_augment

        def strong(x, rng):
            out = augment(x, rng)
            self.strong.append(out.detach().clone())
            return out

        trainer.strong_augment = strong
        objective = trainer.loss_function
        for module, log in ((objective.pseudo, self.pseudo), (objective.mixed_region, self.mixed_region),
                            (objective.rotation, self.rotation)):
            module.register_forward_pre_hook(
                lambda _m, args, log=log: log.append(tuple(a.detach().clone() for a in args)))

    @staticmethod
    def _recording(forward_features, log):
        def wrapper(x):
            out = forward_features(x)
            log.append({"input": x.detach().clone(), "logits": out["logits"].detach().clone(),
                        "grad": torch.is_grad_enabled()})
            return out

        return wrapper

    def weak_labels(self, name: str) -> torch.Tensor:
        (weak,) = [c for c in self.forward[name] if not c["grad"]]
        return weak["logits"].argmax(1)

    def strong_input(self, name: str, n_labeled: int) -> torch.Tensor:
        (student,) = [c for c in self.forward[name] if c["grad"]]
        return student["input"][n_labeled:]


def _mixed(x: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """CutMix written out: inside the mask, sample i takes sample i - 1's value."""
    inside = inside.reshape(inside.shape[0], *([1] * (x.dim() - 3)), *inside.shape[-2:])
    return torch.where(inside, x.roll(1, 0), x)


def _square(region: torch.Tensor) -> tuple[slice, slice]:
    ys, xs = torch.nonzero(region, as_tuple=True)
    return slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1)


def _rotated(x: torch.Tensor, regions: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
    """Region rotation written out: each sample's square region turned by k quarter turns (torch.rot90)."""
    out = x.clone()
    for i in range(x.shape[0]):
        ys, xs = _square(regions[i, 0] > 0.5)
        out[i, ..., ys, xs] = torch.rot90(x[i, ..., ys, xs], int(ks[i]), (-2, -1))
    return out


@pytest.mark.parametrize("view", ["strong", "clean"])
def test_dac_step_trains_each_model_on_the_others_targets_for_the_views_it_applied(view):
    """Ties the trainer's targets to what it applied (a mutation of any of these lines fails here):
    A learns from B's weak-view pseudo labels and B from A's; A's input is the CutMix of the strong
    view by exactly the mask the mixed-region task is trained on; B's input rotates a region of A's
    input (``view="strong"``) or of the CutMix of the weak view (``"clean"``, the default: the
    rotation stays recoverable) by exactly the quarter turns the rotation task is trained on, and
    B's targets turn with it."""
    trainer = make_trainer("dac", aux_rotation_view=view)
    rec = _StepRecord(trainer)
    trainer.run()
    n_labeled = 2
    pl_a, pl_b = rec.weak_labels("a"), rec.weak_labels("b")
    ((_, mask),) = rec.mixed_region
    inside = mask[:, 0] > 0.5
    assert inside.any() and (~inside).any(), "the mask must mix a part of every image"
    assert not torch.equal(_mixed(pl_a, inside), _mixed(pl_b, inside)), "A and B must disagree for this test"

    # A's input: the CutMix of the strong view by the mask the mixed-region task is trained on
    (xs,) = rec.strong
    xa = rec.strong_input("a", n_labeled)
    assert torch.equal(xa, _mixed(xs, inside))
    # A's targets: B's weak-view argmax, mixed by the same mask (cross pseudo supervision)
    (logits_a, labels_a, valid_a), (logits_b, labels_b, valid_b) = rec.pseudo
    assert torch.equal(logits_a, rec.forward["a"][1]["logits"][n_labeled:])
    assert torch.equal(labels_a, _mixed(pl_b, inside)) and bool((valid_a == 1).all())

    # B's input: A's input with the region turned by the label of the rotation task
    ((_, region, ks),) = rec.rotation
    assert sorted(ks.unique().tolist()) != [0], "at least one region must be rotated for this test"
    xb = rec.strong_input("b", n_labeled)
    (weak,) = [c["input"] for c in rec.forward["b"] if not c["grad"]]
    source = xa if view == "strong" else _mixed(weak, inside)  # what the rotated region shows
    inside_region = region > 0.5
    assert torch.equal(xb, torch.where(inside_region, _rotated(source, region, ks), xa))
    for i in range(xa.shape[0]):  # and by no other turn
        ys, xs_ = _square(region[i, 0] > 0.5)
        for wrong in {0, 1, 2, 3} - {int(ks[i])}:
            assert not torch.equal(xb[i][:, ys, xs_], torch.rot90(source[i][:, ys, xs_], wrong, (1, 2)))
    # B's targets: A's weak-view argmax, mixed, then rotated as B's input was
    assert torch.equal(logits_b, rec.forward["b"][1]["logits"][n_labeled:])
    assert torch.equal(labels_b, _rotated(_mixed(pl_a, inside), region, ks))


def test_fixmatch_step_trains_on_its_own_weak_view():
    trainer = make_trainer("fixmatch")
    rec = _StepRecord(trainer)
    trainer.run()
    ((_, labels, _),) = rec.pseudo
    assert not rec.mixed_region and not rec.rotation
    (xs,) = rec.strong
    xa = rec.strong_input("a", 2)
    inside = (xa != xs).any(1)  # the CutMix boxes: FixMatch's strong view is mixed as CPS's is
    assert inside.any() and torch.equal(xa, _mixed(xs, inside))
    assert torch.equal(labels, _mixed(rec.weak_labels("a"), inside))  # A's own weak-view argmax, mixed alike


def test_iterations_are_reproducible_from_the_seed():
    a, b, c = make_trainer("dac", 2, seed=3), make_trainer("dac", 2, seed=3), make_trainer("dac", 2, seed=4)
    for t in (a, b, c):
        t.run()
    sa, sb, sc = (t.network.state_dict() for t in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_stream_batches_depend_only_on_seed_and_position():
    full = iter(StreamBatchSampler(5, 3, seed=1, stream=0))
    batches = [next(full) for _ in range(6)]
    late = next(iter(StreamBatchSampler(5, 3, seed=1, stream=0, start_batch=4)))
    assert late == batches[4]
    # every pass over the items is a permutation
    flat = [i for b in batches for i, _ in b]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))
    assert len({s for b in batches for _, s in b}) == 18  # one transform seed per position
    other = next(iter(StreamBatchSampler(5, 3, seed=1, stream=1)))
    assert other != batches[0]


def test_loader_batches_do_not_depend_on_workers_or_start():
    from monai.transforms import Compose, RandFlipd, RandGaussianNoised

    items = [disc_cup_item(i) for i in range(5)]
    aug = Compose([RandFlipd(["image", "label"], prob=0.5, spatial_axis=0), RandGaussianNoised("image", prob=1.0)])

    def batches(workers: int, start: int, n: int) -> list[dict]:
        loader = CoTrainingLoader(items, items, 2, 3, seed=7, transform_labeled=aug, transform_unlabeled=aug,
                                  num_workers=workers)
        loader.start_at(start)
        it = iter(loader)
        return [next(it) for _ in range(n)]

    serial, parallel, later = batches(0, 0, 4), batches(2, 0, 4), batches(0, 2, 2)
    for a, b in zip(serial, parallel):
        for part in ("labeled", "unlabeled"):
            assert torch.equal(a[part]["image"], b[part]["image"]) and torch.equal(a[part]["label"], b[part]["label"])
    for a, b in zip(serial[2:], later):
        assert torch.equal(a["unlabeled"]["image"], b["unlabeled"]["image"])
    assert not torch.equal(serial[0]["labeled"]["image"], serial[1]["labeled"]["image"])


_KILL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)  # as the in-process runs: float sums must run in the same order
    sys.path.insert(0, {tests!r})
    from ignite.engine import Events
    from medfound.dac.workflow import run_workflow, training_parser
    parser = training_parser(json.loads({cfg!r}))
    parser.get_parsed_content("train#trainer").add_event_handler(
        Events.ITERATION_COMPLETED(once={kill_at}), lambda e: os.kill(os.getpid(), signal.SIGKILL))
    run_workflow(parser)
""")


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    import json

    split = write_tiny_split(tmp_path / "data")
    ref_cfg = tiny_config(split, str(tmp_path / "uninterrupted"))
    ref = train(ref_cfg)
    assert ref["iterations"] == 6 and not ref["resumed"]

    cfg = tiny_config(split, str(tmp_path / "killed"))
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), cfg=json.dumps(cfg), kill_at=5)
    path = os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    saved = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 4  # the last checkpoint before the kill (every 2 iterations)
    assert not (tmp_path / "killed" / "model.pt").exists()

    resumed = train(cfg)
    assert resumed["resumed"] and resumed["iterations"] == 6
    a = torch.load(tmp_path / "uninterrupted" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    for key in ("network",):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), name
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    assert a["lr_scheduler"] == b["lr_scheduler"] and a["best"] == b["best"] and a["curves"] == b["curves"]
    ma = torch.load(tmp_path / "uninterrupted" / "model.pt", weights_only=True)
    mb = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


@pytest.mark.slow
def test_resume_continues_a_finished_run_with_more_epochs(tmp_path):
    split = write_tiny_split(tmp_path / "data")
    cfg = tiny_config(split, str(tmp_path / "run"), method="cps", max_epochs=1)
    first = train(cfg)
    assert first["iterations"] == 3
    more = copy.deepcopy(cfg)
    more["train"]["max_epochs"] = 2
    parser = training_parser(more)
    run_workflow(parser)
    summary = training_summary(parser)
    assert summary["resumed"] and summary["iterations"] == 6
