"""The medfound MONAI Label app on a REAL server (``python -m monailabel.main start_server``, loopback).

Needs the ``label`` extra (MONAI Label 0.8.5 and its pins, pydicom 2.4.4): skipped with the
reason where ``monailabel`` does not import. One server is started for the module on
127.0.0.1 and a free port, with a studies folder written from the synthetic fundus demo data
(3 domains; 2 images labelled and 2 not per domain) and the fundus DAC bundle with its
``demo.json`` overlay; it is stopped at the end, also on failure. Every request has a timeout.

Order matters (pytest runs a module's tests in file order): the model has no weights until
``test_train_*`` has trained it from the datastore, so the infer, active-learning and
concurrency tests come after it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("monailabel", reason="needs the label extra (MONAI Label 0.8.5): see README 'MONAI Label'")
requests = pytest.importorskip("requests", reason="needs the label extra (requests comes with MONAI Label)")
from PIL import Image  # noqa: E402 - after the skip: Pillow comes with the label extra too

from medfound.data.synthetic import write_demo_data  # noqa: E402
from medfound.label.bundle import InferenceBundle  # noqa: E402
from medfound.label.studies import write_studies  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "dac_fundus_segmentation"
MODEL = "dac_fundus"
START_TIMEOUT = 240  # seconds for the server to answer /info/ (imports on a shared 2-core machine)
REQUEST_TIMEOUT = 120
TRAIN_TIMEOUT = 420
UMEDPT_TASK = "fundus_seg"
UMEDPT_CLS_TASK = "fundus_cls"
UMEDPT_CLS_NAMES = ["healthy", "glaucoma"]
UMEDPT_ARGS = {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 4,
               "squeezer_channels": 16, "det_channels": 8, "seg_hidden_channels": 8}
UMEDPT_TASKS = [{"name": UMEDPT_TASK, "kind": "segmentation", "num_classes": 3},
                {"name": UMEDPT_CLS_TASK, "kind": "classification", "num_classes": 2}]
#: MC-dropout passes per image of the epistemic scoring (MONAI Label's default is 5)
EPISTEMIC_SAMPLES = 8
TRAIN = {"max_epochs": 1, "iterations_per_epoch": 2, "device": "cpu", "val_split": 0.2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, root: Path, log: Path, studies: dict, model_dir: Path) -> None:
        self.url, self.root, self.log, self.studies, self.model_dir = url, root, log, studies, model_dir

    def get(self, path: str, **kw):
        return requests.get(self.url + path, timeout=kw.pop("timeout", REQUEST_TIMEOUT), **kw)

    def post(self, path: str, **kw):
        return requests.post(self.url + path, timeout=kw.pop("timeout", REQUEST_TIMEOUT), **kw)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    @property
    def unlabeled(self) -> list[str]:
        return sorted(Path(k).stem for k, v in self.studies["images"].items() if not v["labeled"])


def _umedpt_network():
    from medfound.networks.umedpt import UMedPT

    torch.manual_seed(0)
    return UMedPT(**UMEDPT_ARGS, tasks=UMEDPT_TASKS)


def _umedpt_folder(folder: Path) -> Path:
    """A UMedPT folder as pre-training writes it (small network, seeded weights): network.json + model.pt
    (the classification task's entry also names its classes)."""
    folder.mkdir()
    tasks = [dict(UMEDPT_TASKS[0]), {**UMEDPT_TASKS[1], "class_names": UMEDPT_CLS_NAMES}]
    (folder / "network.json").write_text(json.dumps({"umedpt": UMEDPT_ARGS, "tasks": tasks}))
    torch.save(_umedpt_network().state_dict(), folder / "model.pt")
    return folder


@contextlib.contextmanager
def _serve(root: Path, studies_dir: Path, conf: list[str], studies: dict, model_dir_name: str = "app"):
    """A real MONAI Label server on loopback in a subprocess (own session), stopped on exit."""
    app = root / model_dir_name
    app.mkdir()
    shutil.copyfile(ROOT / "apps" / "medfound_label" / "main.py", app / "main.py")
    port = _free_port()
    log = root / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",
           # no background scoring subprocesses (MONAI Label starts one per scoring method at start-up,
           # after training and after each /activelearning): the tests score through /scoring
           "MONAI_LABEL_AUTO_UPDATE_SCORING": "false"}
    command = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app),
               "--studies", str(studies_dir), "--host", "127.0.0.1", "--port", str(port)]
    for pair in zip(conf[::2], conf[1::2], strict=True):
        command += ["--conf", *pair]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
                                start_new_session=True)
    srv = Server(f"http://127.0.0.1:{port}", root, log, studies, app / "model")
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited ({proc.returncode}):\n{srv.log_text()[-4000:]}")
            try:
                if srv.get("/info/", timeout=10).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not answer within {START_TIMEOUT} s:\n{srv.log_text()[-4000:]}")
            time.sleep(1.0)
        yield srv
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and any train subprocess
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not BUNDLE.is_dir():
        pytest.skip(f"{BUNDLE} not in this checkout (the DAC bundles branch)")
    root = tmp_path_factory.mktemp("label_server")
    demo = root / "demo"
    write_demo_data(demo, datasets=["fundus"], size="small", seed=0)
    studies = write_studies(demo / "fundus", root / "studies", "fundus", labeled_per_domain=2,
                            unlabeled_per_domain=2, domains=["Domain1", "Domain2", "Domain3"])
    umedpt = _umedpt_folder(root / "umedpt")
    conf = ["models", MODEL, "bundle_overlay", "demo.json", "bundles", str(BUNDLE.parent), "device", "cpu",
            "umedpt_model", str(umedpt), "umedpt_task", f"{UMEDPT_TASK},{UMEDPT_CLS_TASK}"]
    with _serve(root, root / "studies", conf, studies) as srv:
        yield srv


@pytest.fixture(scope="module")
def bundle(server):
    """The bundle the module's server serves, parsed once here; the tests only read it (``network()`` is a
    new untrained network on each call, and the deterministic preprocessing and postprocessing keep no state
    between images)."""
    return InferenceBundle(BUNDLE, overlays=["demo.json"])


@pytest.fixture(scope="module")
def trained(server):
    """The DAC model trained once through ``POST /train`` (synchronous); the response. The tests that
    need served weights request it, so each of them also runs alone (``-k``); in file order the two
    tests that check the untrained server run before it."""
    r = server.post(f"/train/{MODEL}", params={"run_sync": "true"}, json=TRAIN, timeout=TRAIN_TIMEOUT)
    assert r.status_code == 200, r.text
    return r


def _png(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)))


def test_info_lists_models_trainers_and_strategies(server):
    info = server.get("/info/").json()
    assert MODEL in info["trainers"]
    assert {"random", "first", f"{MODEL}_disagreement", f"{MODEL}_epistemic"} <= set(info["strategies"])
    assert f"{MODEL}_disagreement" in info["scoring"]
    # before any training the model has no weights: /info lists only usable infer models
    assert MODEL not in info["models"]
    assert info["models"][f"umedpt_{UMEDPT_TASK}"]["labels"] == {"class_1": 1, "class_2": 2}
    assert info["models"][f"umedpt_{UMEDPT_CLS_TASK}"]["type"] == "classification"
    assert info["models"][f"umedpt_{UMEDPT_CLS_TASK}"]["labels"] == {"healthy": 0, "glaucoma": 1}
    assert info["name"] == "medfound"


def test_infer_before_training_is_a_conflict_with_the_reason(server):
    image = server.unlabeled[0]
    r = server.post(f"/infer/{MODEL}", params={"image": image, "output": "image"})
    assert r.status_code == 409, r.text
    assert "no weights" in r.json()["detail"] and "POST /train" in r.json()["detail"]


def test_train_uses_the_unlabelled_images_and_publishes_the_model(server, trained):
    runs = sorted((server.model_dir / MODEL / "runs").iterdir())
    assert len(runs) == 1
    run = runs[0]
    split = json.loads((run / "split.json").read_text())
    stats = json.loads((run / "train_stats.json").read_text())
    # the datastore's images without a label are DAC's unlabelled set, the labelled ones its labelled set
    assert sorted(it["case_id"] for it in split["unlabeled"]) == server.unlabeled
    assert all("label" not in it for it in split["unlabeled"])
    assert split["counts"] == {"labeled": 5, "validation": 1, "unlabeled": 6, "test": 0}
    assert split["unlabeled_domains"] == ["Domain1", "Domain2", "Domain3"]
    assert stats["iterations"] == TRAIN["max_epochs"] * TRAIN["iterations_per_epoch"]
    assert stats["unlabeled_images"] == server.unlabeled
    # the train log shows the unlabelled images going into DAC, and the epoch summary a non-zero
    # cross pseudo supervision loss ("pseudo"), the term computed on the unlabelled batches
    log = server.log_text()
    assert "5 labelled + 6 unlabelled images" in log
    pseudo = [float(v) for v in re.findall(r"epoch 1: .*\bpseudo (\d+\.\d+)", log)]
    assert pseudo and pseudo[-1] > 0
    # a co-training checkpoint (A and B) and the published network the infer task serves
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert {"network"} <= set(state)
    assert (server.model_dir / MODEL / "model.pt").is_file()
    assert MODEL in server.get("/info/").json()["models"]


def test_infer_serves_the_trained_model_with_a_mask_of_the_image_size(server, trained, bundle):
    image = server.unlabeled[0]
    source = np.asarray(Image.open(server.root / "studies" / f"{image}.png"))
    r = server.post(f"/infer/{MODEL}", params={"image": image, "output": "image"})
    assert r.status_code == 200, r.text
    mask = _png(r.content)
    assert mask.shape == source.shape[:2]
    assert set(np.unique(mask).tolist()) <= set(range(len(bundle.class_names)))
    # the served network is the one the datastore training published: the bundle's own pipeline
    # with that model.pt gives the same mask (MONAI reads a PNG as (C, W, H), hence the transpose)
    from monai.transforms import Compose

    from medfound.dac.evaluation import load_trained_network

    network = load_trained_network(bundle.network(), server.model_dir / MODEL / "model.pt")
    data = bundle.preprocessing()({"image": str(server.root / "studies" / f"{image}.png")})
    with torch.no_grad():
        data["pred"] = bundle.inferer()(data["image"][None], network)[0]
    expected = np.asarray(Compose(bundle.postprocessing())(data)["pred"][0]).astype(np.uint8).T
    np.testing.assert_array_equal(mask, expected)
    r = server.post(f"/infer/{MODEL}", params={"image": image, "output": "json"})
    meta = r.json()
    assert meta["format"] == ".png"
    assert meta["label_names"] == {name: k for k, name in enumerate(bundle.class_names) if k > 0}
    assert set(meta["classes_present"]) == set(np.unique(mask).tolist())


def test_infer_on_an_uploaded_png_gives_a_png_of_its_size(server, trained):
    path = server.root / "studies" / f"{server.unlabeled[1]}.png"
    with open(path, "rb") as f:
        r = server.post(f"/infer/{MODEL}", params={"output": "image"}, files={"file": ("up.png", f, "image/png")})
    assert r.status_code == 200, r.text
    assert _png(r.content).shape == np.asarray(Image.open(path)).shape[:2]


def _measured_disagreement(server, bundle: InferenceBundle, image_ids: list[str],
                           checkpoint: Path) -> dict[str, float]:
    """A/B disagreement recomputed here from a co-training checkpoint (A and B loaded separately)."""
    from medfound.dac.evaluation import load_trained_network

    a = load_trained_network(bundle.network(), checkpoint, sub_model="a")
    b = load_trained_network(bundle.network(), checkpoint, sub_model="b")
    pre = bundle.preprocessing()
    out = {}
    with torch.no_grad():
        for image in image_ids:
            x = torch.as_tensor(pre({"image": str(server.root / "studies" / f"{image}.png")})["image"])[None]
            out[image] = float((a(x).argmax(1) != b(x).argmax(1)).double().mean())
    return out


@contextlib.contextmanager
def _disagreeing_run(server, bundle: InferenceBundle):
    """A newer run whose B is the trained A with class 1's bias raised, removed afterwards.

    After the module's 2-iteration training A and B both label every pixel background, so every
    disagreement is 0 and any ranking would pass. Here B = A except that class 1 wins wherever A's
    background-vs-class-1 margin is below its 5th percentile over the unlabelled images' pixels:
    the images then disagree in proportion to their own low-margin pixels. The strategy uses the
    newest run's ``last.pt``.
    """
    from medfound.dac.evaluation import load_trained_network

    runs = server.model_dir / MODEL / "runs"
    trained = max(runs.glob("*/last.pt"), key=os.path.getmtime)
    a = load_trained_network(bundle.network(), trained, sub_model="a")
    pre = bundle.preprocessing()
    with torch.no_grad():
        margins = torch.cat([
            (lambda logits: (logits[:, 0] - logits[:, 1]).flatten())(
                a(torch.as_tensor(pre({"image": str(server.root / "studies" / f"{i}.png")})["image"])[None]))
            for i in server.unlabeled])
    state = torch.load(trained, map_location="cpu", weights_only=True)
    net = state["network"]
    for key in [k for k in net if k.startswith("model_a.")]:
        net["model_b." + key[len("model_a."):]] = net[key].clone()
    net["model_b.classifier.bias"][1] += float(torch.quantile(margins, 0.05))
    run = runs / "zz_disagreeing"
    run.mkdir()
    torch.save(state, run / "last.pt")
    try:
        yield run / "last.pt"
    finally:
        shutil.rmtree(run)


def test_disagreement_strategy_ranks_by_measured_ab_disagreement(server, trained, bundle):
    with _disagreeing_run(server, bundle) as checkpoint:
        r = server.post(f"/activelearning/{MODEL}_disagreement", json={})
        assert r.status_code == 200, r.text
        answer = r.json()
        measured = _measured_disagreement(server, bundle, server.unlabeled, checkpoint)
    assert answer["id"] in server.unlabeled
    ranking = answer["ranking"]
    assert sorted(i for i, _ in ranking) == server.unlabeled
    # the measured disagreements differ between images, so the order below is not the ids' tie-break
    assert len({round(v, 6) for v in measured.values()}) >= 3 and max(measured.values()) > 0.01
    for image, score in ranking:
        assert score == pytest.approx(measured[image], abs=1e-6)
    expected = sorted(server.unlabeled, key=lambda i: (-measured[i], i))
    assert [i for i, _ in ranking] == expected
    assert answer["id"] == expected[0]


def _entropy_of_mean(probs: torch.Tensor) -> float:
    """MONAI Label's epistemic score of MC-dropout softmax maps ``(N, K, H, W)``: mean over pixels of the entropy
    of their mean (``EpistemicScoring.entropy_volume``, its 5e-5 floor included)."""
    mean = probs.double().clamp_min(5e-5).mean(0)
    return float((-(mean * mean.log())).sum(0).mean())


def test_epistemic_mc_dropout_scores_and_ranks_the_unlabelled_images(server, trained, bundle):
    """MONAI Label's built-in Epistemic scoring and strategy on the bundle's network (its ``network_def``
    takes ``dropout``): every unlabelled image gets the entropy of its MC-dropout prediction, and the
    strategy returns the image with the highest score.

    The scores are random (dropout masks drawn in the server): each is compared with this test's own
    estimate from 64 passes of the published network with only its dropout sampling, within 6 standard
    deviations of an ``EPISTEMIC_SAMPLES``-pass estimate (measured here from the 8 disjoint groups of
    ``EPISTEMIC_SAMPLES`` passes among those 64); two scorings
    give different scores (the server samples: without dropout they would be equal). With MONAI
    Label's ``train_mode`` (``network.train()``: BatchNorm on batch statistics) the scoring fails outright:
    DeepLabV3+'s image-pooling branch cannot normalise a batch of one image.
    """
    from medfound.dac.evaluation import load_trained_network
    from medfound.label.infer import mc_dropout_mode

    key = f"{MODEL}_epistemic_entropy"

    def score_all() -> dict[str, float]:
        r = server.post(f"/scoring/{MODEL}_epistemic", params={"run_sync": "true"},
                        json={"simulation_size": EPISTEMIC_SAMPLES, "max_workers": 1}, timeout=TRAIN_TIMEOUT)
        assert r.status_code == 200, r.text
        summary = r.json()
        assert summary["total"] == summary["executed"] == len(server.unlabeled)
        return {image: float(server.get("/datastore/image/info", params={"image": image}).json()[key])
                for image in server.unlabeled}

    first, scores = score_all(), score_all()
    assert first != scores  # the server's passes sample dropout masks: two scorings differ
    assert "EPISTEMIC:: " in server.log_text()

    network = mc_dropout_mode(load_trained_network(bundle.network(), server.model_dir / MODEL / "model.pt"))
    pre = bundle.preprocessing()
    torch.manual_seed(0)
    for image, score in scores.items():
        x = torch.as_tensor(pre({"image": str(server.root / "studies" / f"{image}.png")})["image"])[None]
        with torch.no_grad():
            probs = torch.stack([torch.softmax(network(x), dim=1)[0] for _ in range(8 * EPISTEMIC_SAMPLES)])
        estimates = [_entropy_of_mean(group) for group in probs.split(EPISTEMIC_SAMPLES)]
        spread = float(np.std(estimates, ddof=1))
        assert spread > 0  # dropout samples: the estimate varies
        assert 0 < score <= np.log(len(bundle.class_names))
        assert abs(score - _entropy_of_mean(probs)) <= 6 * spread + 1e-6, (image, score, estimates)

    r = server.post(f"/activelearning/{MODEL}_epistemic", json={})
    assert r.status_code == 200, r.text
    best = max(server.unlabeled, key=lambda i: (scores[i], i))
    assert r.json()["id"] == best
    assert r.json()["epistemic_entropy"]["score"] == pytest.approx(scores[best])


@pytest.mark.parametrize("strategy", ["random", "first"])
def test_standard_strategies_return_an_unlabelled_image(server, strategy):
    r = server.post(f"/activelearning/{strategy}", json={})
    assert r.status_code == 200, r.text
    assert r.json()["id"] in server.unlabeled


def test_malformed_requests_get_4xx_with_a_reason_and_the_server_keeps_serving(server, trained):
    r = server.post("/infer/no_such_model", params={"image": server.unlabeled[0]})
    assert r.status_code == 404 and "no_such_model" in r.json()["detail"]
    r = server.post(f"/infer/{MODEL}", params={"image": "no_such_image"})
    assert r.status_code == 404 and "no_such_image" in r.json()["detail"]
    r = server.post(f"/infer/{MODEL}", files={"file": ("broken.png", b"not a png at all", "image/png")})
    assert r.status_code == 422 and "cannot be read" in r.json()["detail"]
    r = server.post("/activelearning/no_such_strategy", json={})
    assert r.status_code == 404 and "no_such_strategy" in r.json()["detail"]
    assert server.get("/info/").status_code == 200
    r = server.post(f"/infer/{MODEL}", params={"image": server.unlabeled[0], "output": "image"})
    assert r.status_code == 200


def test_eight_concurrent_inferences_all_succeed(server, trained):
    images = [server.unlabeled[k % len(server.unlabeled)] for k in range(8)]

    def infer(image: str) -> tuple[int, tuple[int, ...]]:
        r = server.post(f"/infer/{MODEL}", params={"image": image, "output": "image"})
        return r.status_code, _png(r.content).shape if r.status_code == 200 else ()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(infer, images))
    for image, (status, shape) in zip(images, results, strict=True):
        assert status == 200
        assert shape == np.asarray(Image.open(server.root / "studies" / f"{image}.png")).shape[:2]


def test_umedpt_head_on_the_foundation_encoder_gives_the_network_s_mask(server):
    """The served UMedPT model's mask equals the network's arg-max computed here from the PNG
    (MONAI reads photographs as (C, W, H): the network sees that layout in both)."""
    from medfound.networks.umedpt import UMedPTTaskOutput

    image = server.unlabeled[0]
    pixels = np.array(Image.open(server.root / "studies" / f"{image}.png").convert("RGB"))
    r = server.post(f"/infer/umedpt_{UMEDPT_TASK}", params={"image": image, "output": "image"})
    assert r.status_code == 200, r.text
    mask = _png(r.content)
    x = torch.as_tensor(pixels, dtype=torch.float32).permute(2, 1, 0)[None] / 255.0  # (1, 3, W, H)
    with torch.no_grad():
        expected = UMedPTTaskOutput(_umedpt_network().eval(), UMEDPT_TASK)(x).argmax(1)[0].T.numpy()
    assert mask.shape == pixels.shape[:2]
    np.testing.assert_array_equal(mask, expected)


def test_umedpt_classification_head_answers_the_network_s_probabilities(server):
    """The UMedPT classification head on the foundation encoder is served with a JSON answer: the softmax of
    the head's logits computed here from the PNG (whole image, MONAI's (C, W, H) layout), the arg-max class."""
    from medfound.networks.umedpt import UMedPTTaskOutput

    image = server.unlabeled[0]
    pixels = np.array(Image.open(server.root / "studies" / f"{image}.png").convert("RGB"))
    r = server.post(f"/infer/umedpt_{UMEDPT_CLS_TASK}", params={"image": image, "output": "json"})
    assert r.status_code == 200, r.text
    answer = r.json()
    x = torch.as_tensor(pixels, dtype=torch.float32).permute(2, 1, 0)[None] / 255.0
    with torch.no_grad():
        probs = torch.softmax(UMedPTTaskOutput(_umedpt_network().eval(), UMEDPT_CLS_TASK)(x)[0], dim=0)
    assert answer["format"] == "classification" and answer["task"] == UMEDPT_CLS_TASK
    assert answer["class_names"] == UMEDPT_CLS_NAMES
    for k, name in enumerate(UMEDPT_CLS_NAMES):
        assert answer["probabilities"][name] == pytest.approx(float(probs[k]), abs=1e-5)
    assert answer["prediction"] == UMEDPT_CLS_NAMES[int(probs.argmax())]
    assert answer["prediction_index"] == int(probs.argmax())
    # output=image: the same JSON as a file (no mask exists; MONAI Label would answer a bare 500 without a file)
    r = server.post(f"/infer/umedpt_{UMEDPT_CLS_TASK}", params={"image": image, "output": "image"})
    assert r.status_code == 200, r.text
    assert json.loads(r.content)["probabilities"] == answer["probabilities"]


def test_2d_client_example_segments_the_next_image_and_submits_its_label(server, trained, tmp_path):
    """examples/monailabel/client_2d.py (MONAI Label's Python client) against the server: the strategy's
    image, the served mask (same as /infer answers), an overlay of the photograph's size, and with
    --submit the mask becomes the image's final label (the image leaves the unlabelled set)."""
    r = server.post("/activelearning/first", json={})
    image = r.json()["id"]
    out = tmp_path / "masks"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "monailabel" / "client_2d.py"), "--server",
                           server.url, "--model", MODEL, "--strategy", "first", "--out", str(out), "--submit"],
                          capture_output=True, text=True, timeout=REQUEST_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"next image (first): {image}" in done.stdout
    mask = np.asarray(Image.open(out / f"{image}_{MODEL}.png"))
    expected = _png(server.post(f"/infer/{MODEL}", params={"image": image, "output": "image"}).content)
    np.testing.assert_array_equal(mask, expected)
    photo = np.asarray(Image.open(server.root / "studies" / f"{image}.png"))
    assert np.asarray(Image.open(out / f"{image}_{MODEL}_overlay.png")).shape == (*photo.shape[:2], 3)
    # nothing else is left there (the client's own download folder is removed)
    assert sorted(p.name for p in out.iterdir()) == [f"{image}_{MODEL}.png", f"{image}_{MODEL}_overlay.png"]
    label = server.root / "studies" / "labels" / "final" / f"{image}.png"
    np.testing.assert_array_equal(np.asarray(Image.open(label)), mask)
    assert server.post("/activelearning/first", json={}).json()["id"] != image


SCGM_BUNDLE = ROOT / "bundles" / "dac_scgm_segmentation"


def test_dicom_series_in_dicom_seg_out_reads_back_to_the_bundle_mask(tmp_path):
    """A DICOM series in the studies folder is an image; /infer answers a DICOM-SEG that
    references it and reads back with pydicom to the mask the bundle's own pipeline gives.

    The spinal-cord bundle's network is served with seeded untrained weights (a copy of the
    bundle with ``models/model.pt`` written here): what is checked is the DICOM path, not accuracy.
    """
    import nibabel as nib
    import pydicom
    from monai.transforms import Compose

    from medfound.dac.evaluation import load_trained_network
    from medfound.io import write_dicom_series

    if not SCGM_BUNDLE.is_dir():
        pytest.skip(f"{SCGM_BUNDLE} not in this checkout (the DAC bundles branch)")
    bundles = tmp_path / "bundles"
    shutil.copytree(SCGM_BUNDLE, bundles / SCGM_BUNDLE.name, ignore=shutil.ignore_patterns("runs", "eval"))
    bundle = InferenceBundle(bundles / SCGM_BUNDLE.name, overlays=["demo.json"])
    torch.manual_seed(0)
    (bundles / SCGM_BUNDLE.name / "models").mkdir(exist_ok=True)
    torch.save(bundle.network().state_dict(), bundle.model_path)
    write_demo_data(tmp_path / "demo", datasets=["scgm"], size="small", seed=0)
    volume_file = sorted((tmp_path / "demo" / "scgm").glob("*-image.nii.gz"))[0]
    nifti = nib.load(volume_file)
    files = write_dicom_series(np.asarray(nifti.dataobj, dtype=np.float32), tmp_path / "studies" / "series1",
                               nifti.affine, modality="MR", series_instance_uid="1.2.826.0.1.3680043.8.498.7")

    # the mask the bundle's own pipeline gives for the series (X, Y, Z as MONAI reads it)
    network = load_trained_network(bundle.network(), bundle.model_path)
    data = bundle.preprocessing()({"image": str(tmp_path / "studies" / "series1")})
    with torch.no_grad():
        data["pred"] = bundle.inferer()(data["image"][None], network)[0]
    expected = np.asarray(Compose(bundle.postprocessing())(data)["pred"][0]).astype(np.uint8)
    assert expected.any()

    conf = ["models", "dac_scgm", "bundle_overlay", "demo.json", "bundles", str(bundles), "device", "cpu"]
    with _serve(tmp_path, tmp_path / "studies", conf, {"images": {}}) as srv:
        r = srv.post("/infer/dac_scgm", params={"image": "series1", "output": "image"})
        assert r.status_code == 200, r.text
        seg = pydicom.dcmread(io.BytesIO(r.content))
        meta = srv.post("/infer/dac_scgm", params={"image": "series1", "output": "json"}).json()
    assert meta["format"] == "dicom_seg"
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert seg.Modality == "SEG" and seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID and seg.StudyInstanceUID == source.StudyInstanceUID
    # frame by frame from its references: volume[..., k] was written to files[k]
    slice_of = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: k for k, f in enumerate(files)}
    decoded = np.zeros(expected.shape, np.uint8)
    for frame, item in zip(seg.pixel_array.reshape(-1, seg.Rows, seg.Columns), seg.PerFrameFunctionalGroupsSequence,
                           strict=True):
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        k = slice_of[item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        decoded[:, :, k][frame.T > 0] = segment  # DICOM frames are (row = y, column = x)
    np.testing.assert_array_equal(decoded, expected)



def test_scgm_volumes_train_from_the_datastore_on_their_axial_slices(tmp_path):
    """POST /train/dac_scgm on a studies folder of NIfTI volumes: the datastore's volumes are split by volume
    (labelled / validation / unlabelled), each is cut into the 2D axial slices the SCGM bundle trains on, the
    unlabelled volumes' slices are DAC's unlabelled set, and the published network segments a volume."""
    import nibabel as nib

    if not SCGM_BUNDLE.is_dir():
        pytest.skip(f"{SCGM_BUNDLE} not in this checkout (the DAC bundles branch)")
    write_demo_data(tmp_path / "demo", datasets=["scgm"], size="small", seed=0)
    source, studies = tmp_path / "demo" / "scgm", tmp_path / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    labelled, unlabelled = [], []
    for site in ("site1", "site2", "site3"):
        for subject, ids in (("sc01", labelled), ("sc02", unlabelled)):
            case = f"{site}_{subject}"  # <domain>_<name>: the app's default domain rule gives the site
            shutil.copyfile(source / f"{site}-{subject}-image.nii.gz", studies / f"{case}.nii.gz")
            if ids is labelled:  # rater 1's mask as the final label (class indices 0/1/2)
                shutil.copyfile(source / f"{site}-{subject}-mask-r1.nii.gz",
                                studies / "labels" / "final" / f"{case}.nii.gz")
            ids.append(case)

    conf = ["models", "dac_scgm", "bundle_overlay", "demo.json", "bundles", str(SCGM_BUNDLE.parent), "device", "cpu"]
    with _serve(tmp_path, studies, conf, {"images": {}}) as srv:
        assert "dac_scgm" in srv.get("/info/").json()["trainers"]
        r = srv.post("/train/dac_scgm", params={"run_sync": "true"}, json=TRAIN, timeout=TRAIN_TIMEOUT)
        assert r.status_code == 200, r.text
        run = next((srv.model_dir / "dac_scgm" / "runs").iterdir())
        split = json.loads((run / "split.json").read_text())
        assert split["volume_counts"] == {"labeled": 2, "validation": 1, "unlabeled": 3, "test": 0}
        assert split["volumes"]["unlabeled"] == unlabelled
        assert sorted(split["volumes"]["labeled"] + split["volumes"]["validation"]) == labelled
        assert split["regions"] == {"gm": [1], "cord": [1, 2]}
        for part in ("labeled", "validation", "unlabeled"):
            # every slice of each volume of the part, none of another part's volumes
            depth = {v: nib.load(studies / f"{v}.nii.gz").shape[2] for v in split["volumes"][part]}
            assert split["counts"][part] == sum(depth.values()) == len(split[part])
            assert {it["subject"] for it in split[part]} == set(depth)
            assert all(("label" in it) == (part != "unlabeled") for it in split[part])
            assert all(nib.load(it["image"]).ndim == 2 for it in split[part][:3])
        assert {it["domain"] for it in split["unlabeled"]} == {"site1", "site2", "site3"}
        log = srv.log_text()
        assert "volumes sliced" in log and f"{split['counts']['unlabeled']} unlabelled images" in log
        assert (srv.model_dir / "dac_scgm" / "model.pt").is_file()
        # the published network serves the volumes: a mask of the volume's shape with the bundle's classes
        r = srv.post("/infer/dac_scgm", params={"image": unlabelled[0], "output": "image"})
        assert r.status_code == 200, r.text
        (tmp_path / "mask.nii.gz").write_bytes(r.content)
        mask = np.asarray(nib.load(tmp_path / "mask.nii.gz").dataobj)
        assert mask.shape == nib.load(studies / f"{unlabelled[0]}.nii.gz").shape
        assert set(np.unique(mask).tolist()) <= {0, 1, 2}
