"""Active learning by co-training disagreement: the unlabelled image on which DAC's A and B disagree most.

DAC trains two sub-models, A and B, from different initialisations; on an image both were
trained to agree on (through cross pseudo supervision and the feature loss), their
remaining disagreement marks an image the pair has not learnt, the co-training analogue of
query-by-committee. :class:`ABDisagreementScorer` measures it:

    disagreement(image) = fraction of pixels whose arg-max class differs between A and B

at the network's working size (the bundle's preprocessing, as at inference). A and B come
from the newest co-training checkpoint (``last.pt`` of the app's latest training run of the
model, or a configured file); the served ``model.pt`` holds A only.

:class:`ABDisagreementScoring` (a MONAI Label scoring method) stores each unlabelled image's
score and the checkpoint it came from in the datastore's image info
(``<key>``, ``<key>_checkpoint``); :class:`ABDisagreement` (a strategy) scores what is
missing or stale with the same scorer and returns the unlabelled image with the highest
score, with every score it compared.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
from typing import Any

import torch
from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy

from medfound.dac.evaluation import load_trained_network
from medfound.label.bundle import InferenceBundle
from medfound.utils import resolve_device

__all__ = ["ABDisagreementScorer", "ABDisagreement", "ABDisagreementScoring", "disagreement"]

logger = logging.getLogger(__name__)


def disagreement(logits_a: torch.Tensor, logits_b: torch.Tensor) -> float:
    """Fraction of pixels (or voxels) whose arg-max class differs between two logit maps ``(B, K, ...)``.

    Example
    -------
    >>> a = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])      # classes 0, 1
    >>> b = torch.tensor([[[[2.0, 3.0]], [[0.0, 1.0]]]])      # classes 0, 0
    >>> disagreement(a, b)
    0.5
    """
    return float((logits_a.argmax(1) != logits_b.argmax(1)).float().mean())


class ABDisagreementScorer:
    """Scores images by the disagreement of the co-trained sub-models A and B.

    Parameters
    ----------
    bundle : the served bundle (its network definition and preprocessing).
    runs_dir : the app's training runs of this model (``<runs_dir>/*/last.pt``).
    checkpoint : a co-training checkpoint to use instead (e.g. a bundle run's ``last.pt``).
    key : image-info key of the score.
    device : where A and B run.
    """

    def __init__(self, bundle: InferenceBundle, runs_dir: str, checkpoint: str | None = None,
                 key: str = "ab_disagreement", device: str = "auto") -> None:
        self.bundle = bundle
        self.runs_dir = str(runs_dir)
        self.fixed_checkpoint = checkpoint
        self.key = key
        self.device = resolve_device(device, what="disagreement device")
        self._preprocessing = bundle.preprocessing()
        self._models: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()

    def checkpoint(self) -> str | None:
        """The co-training checkpoint in use: the configured one, else the newest run's ``last.pt``."""
        if self.fixed_checkpoint:
            return self.fixed_checkpoint if os.path.isfile(self.fixed_checkpoint) else None
        found = glob.glob(os.path.join(self.runs_dir, "*", "last.pt"))
        return max(found, key=os.path.getmtime) if found else None

    def stamp(self) -> str | None:
        """Identifies the checkpoint's state (path and modification time): scores of another stamp are stale."""
        path = self.checkpoint()
        return None if path is None else f"{path}@{os.stat(path).st_mtime_ns}"

    def _sub_models(self) -> tuple[Any, Any]:
        stamp = self.stamp()
        if stamp is None:
            raise HTTPException(status_code=409, detail=(
                f"no co-training checkpoint for {self.bundle.name}: A/B disagreement needs sub-models A and B "
                f"(train from the datastore first: POST /train/<model>; looked in {self.runs_dir}/*/last.pt)"))
        if self._models is None or self._models[0] != stamp:
            path = stamp.rsplit("@", 1)[0]
            a = load_trained_network(self.bundle.network(), path, sub_model="a").to(self.device)
            b = load_trained_network(self.bundle.network(), path, sub_model="b").to(self.device)
            self._models = (stamp, a, b)
        return self._models[1], self._models[2]

    @torch.no_grad()
    def score(self, image: str) -> float:
        """The A/B disagreement of one image (path or DICOM series folder)."""
        with self._lock:
            a, b = self._sub_models()
            x = self._preprocessing({"image": image})["image"]
            x = torch.as_tensor(x)[None].to(self.device)
            return disagreement(a(x), b(x))

    def update(self, datastore: Datastore, image_ids: list[str]) -> dict[str, float]:
        """Scores of ``image_ids``; computes (and stores in the image info) the missing or stale ones."""
        stamp = self.stamp()
        scores = {}
        for image_id in image_ids:
            info = datastore.get_image_info(image_id)
            if stamp is not None and info.get(f"{self.key}_checkpoint") == stamp and self.key in info:
                scores[image_id] = float(info[self.key])
                continue
            value = self.score(datastore.get_image_uri(image_id))
            datastore.update_image_info(image_id, {self.key: value, f"{self.key}_checkpoint": self.stamp()})
            logger.info("%s: %s = %.5f", image_id, self.key, value)
            scores[image_id] = value
        return scores


class ABDisagreementScoring(ScoringMethod):
    """Scoring method: stores the A/B disagreement of every unlabelled image in the datastore."""

    def __init__(self, scorer: ABDisagreementScorer) -> None:
        super().__init__(f"A/B disagreement of DAC's co-trained sub-models ({scorer.bundle.name})")
        self.scorer = scorer

    def __call__(self, request, datastore: Datastore) -> dict[str, Any]:
        return self.scorer.update(datastore, datastore.get_unlabeled_images())


class ABDisagreement(Strategy):
    """Strategy: the unlabelled image on which A and B disagree most (ties: the smaller id)."""

    def __init__(self, scorer: ABDisagreementScorer) -> None:
        super().__init__(f"Unlabelled image with the highest A/B disagreement ({scorer.bundle.name})")
        self.scorer = scorer

    def __call__(self, request, datastore: Datastore) -> dict[str, Any] | None:
        images = sorted(datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels")))
        if not images:
            return None
        scores = self.scorer.update(datastore, images)
        ranking = sorted(images, key=lambda i: (-scores[i], i))
        best = ranking[0]
        logger.info("%s: selected %s (disagreement %.5f of %d unlabelled)", request.get("strategy"), best,
                    scores[best], len(images))
        return {"id": best, self.scorer.key: scores[best], "ranking": [[i, scores[i]] for i in ranking]}
