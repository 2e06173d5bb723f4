"""The medfound MONAI Label app: DAC bundles served, trained on the datastore, and queried by disagreement.

Start it (``label`` extra installed, its environment active)::

    monailabel start_server --app apps/medfound_label --studies studies --conf models dac_fundus

Options (``--conf KEY VALUE``):

=====================  ============================================================================
``models``             comma-separated names from :data:`MODELS` (default ``dac_fundus``)
``bundles``            folder holding the bundles (default: ``bundles/`` of the medfound checkout)
``bundle_overlay``     comma-separated config files merged over each bundle's ``inference.json``
                       and ``train.json`` (names in its ``configs/`` or paths), e.g. ``demo.json``
``model_dir``          where trained models and runs go (default ``<app>/model``)
``domain_field``       image-info field holding an image's domain (default ``domain``)
``domain_pattern``     regular expression whose first group, searched in the image id, gives the
                       domain when the field is absent (default: the id up to the first ``_``)
``ab_checkpoint``      co-training checkpoint for the disagreement strategy (default: the newest
                       run's ``last.pt``)
``umedpt_model``       a UMedPT folder (``network.json`` + ``model.pt``, as medfound's pre-training
                       writes it): adds the model ``umedpt_<task>`` per served task
                       (:class:`~medfound.label.umedpt.UMedPTSegmentation` for a segmentation
                       head, :class:`~medfound.label.umedpt.UMedPTClassification` for a
                       classification or multilabel head: a JSON answer)
``umedpt_task``        comma-separated tasks of that folder to serve (default ``segmentation``)
=====================  ============================================================================

Per model ``<m>`` it registers: the infer task ``<m>``
(:class:`~medfound.label.infer.BundleSegmentation`), the trainer ``<m>``
(:class:`~medfound.label.train.DACDatastoreTrainTask`; for ``dac_scgm`` on NIfTI volumes cut
into axial slices), the strategy and scoring method
``<m>_disagreement`` (:mod:`medfound.label.activelearning`) and ``<m>_epistemic`` (MONAI
Label's MC-dropout entropy), besides MONAI Label's ``random`` and ``first``.

Requests MONAI Label would answer with a bare 500 get a 4xx with the reason: an unknown model
or strategy (404), an image id not in the datastore (404), an input that cannot be read
(422), a model without weights (409).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.activelearning.epistemic import Epistemic
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.tasks.scoring.epistemic_v2 import EpistemicScoring

import medfound
from medfound.data.datalist import SCGM
from medfound.errors import ConfigError, DatasetLayoutError, ImageReadError, WeightsError
from medfound.label.activelearning import ABDisagreement, ABDisagreementScorer, ABDisagreementScoring
from medfound.label.bundle import InferenceBundle
from medfound.label.datastore import SeriesDatastore
from medfound.label.infer import BundleSegmentation
from medfound.label.train import DEFAULT_DOMAIN_PATTERN, DACDatastoreTrainTask, domain_rule
from medfound.label.umedpt import umedpt_infer_task

__all__ = ["MODELS", "MedfoundLabelApp", "default_bundles_dir"]

logger = logging.getLogger(__name__)

#: model name -> (bundle folder, dimension of the images the client sends)
MODELS: dict[str, tuple[str, int]] = {
    "dac_fundus": ("dac_fundus_segmentation", 2),
    "dac_polyp": ("dac_polyp_segmentation", 2),
    "dac_scgm": ("dac_scgm_segmentation", 3),
}


def default_bundles_dir() -> str:
    """``bundles/`` next to the ``medfound`` package (a source checkout or an editable install)."""
    return str(Path(medfound.__file__).resolve().parents[1] / "bundles")


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


class MedfoundLabelApp(MONAILabelApp):
    """MONAI Label app serving the DAC bundles (see the module docstring for its options)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        conf = dict(conf or {})
        names = _list(conf.get("models", "dac_fundus"))
        unknown = [n for n in names if n not in MODELS]
        if unknown:
            raise ConfigError(f"--conf models: unknown model(s) {unknown}; choose from {sorted(MODELS)}")
        self.model_dir = conf.get("model_dir") or os.path.join(app_dir, "model")
        bundles_dir = Path(conf.get("bundles") or default_bundles_dir())
        overlays = _list(conf.get("bundle_overlay"))
        self.bundles = {}
        for name in names:
            root = bundles_dir / MODELS[name][0]
            if not root.is_dir():
                raise DatasetLayoutError(f"model {name}: bundle folder {root} not found (--conf bundles <folder>)")
            self.bundles[name] = InferenceBundle(root, overlays=overlays)
        self.domain = domain_rule(conf.get("domain_field", "domain"),
                                  conf.get("domain_pattern", DEFAULT_DOMAIN_PATTERN))
        self.scorers = {name: ABDisagreementScorer(b, os.path.join(self.model_dir, name, "runs"),
                                                   checkpoint=conf.get("ab_checkpoint"),
                                                   key=f"{name}_ab_disagreement", device=conf.get("device", "auto"))
                        for name, b in self.bundles.items()}
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="medfound",
                         description="medfound: DAC segmentation served, trained semi-supervised on the datastore",
                         version=str(medfound.__version__))

    # -- tasks -----------------------------------------------------------------------------------
    def _trained_path(self, name: str) -> str:
        return os.path.join(self.model_dir, name, "model.pt")

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()
        return SeriesDatastore(self.studies, extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
                               auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                               read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def init_infers(self) -> dict[str, Any]:
        infers: dict[str, Any] = {}
        for name, bundle in self.bundles.items():
            task = BundleSegmentation(bundle, self._trained_path(name), dimension=MODELS[name][1])
            if not task.is_valid():
                logger.warning("model %s has no weights yet (%s or %s): train the bundle or POST /train/%s",
                               name, task.path[0], task.path[1], name)
            infers[name] = task
        if self.conf.get("umedpt_model"):
            for task in _list(self.conf.get("umedpt_task")) or ["segmentation"]:
                infers[f"umedpt_{task}"] = umedpt_infer_task(self.conf["umedpt_model"], task)
        return infers

    def init_trainers(self) -> dict[str, Any]:
        # volumes (dac_scgm) train on their axial slices, scored on the SCGM regions (gm, cord)
        return {name: DACDatastoreTrainTask(bundle, os.path.join(self.model_dir, name),
                                            os.path.dirname(self._trained_path(name)), domain=self.domain,
                                            volumes=MODELS[name][1] == 3,
                                            regions=SCGM.regions if MODELS[name][1] == 3 else None)
                for name, bundle in self.bundles.items()}

    def init_strategies(self) -> dict[str, Any]:
        strategies: dict[str, Any] = {"random": Random(), "first": First()}
        for name in self.bundles:
            strategies[f"{name}_disagreement"] = ABDisagreement(self.scorers[name])
            strategies[f"{name}_epistemic"] = Epistemic(key=f"{name}_epistemic_entropy")
        return strategies

    def init_scoring_methods(self) -> dict[str, Any]:
        methods: dict[str, Any] = {}
        for name, bundle in self.bundles.items():
            methods[f"{name}_disagreement"] = ABDisagreementScoring(self.scorers[name])
            mc = BundleSegmentation(bundle, self._trained_path(name), dimension=MODELS[name][1], probabilities=True)
            methods[f"{name}_epistemic"] = EpistemicScoring(mc, key_output_entropy=f"{name}_epistemic_entropy",
                                                            key_output_ts=f"{name}_epistemic_ts")
        return methods

    # -- requests: reasons instead of bare 500s -------------------------------------------------------
    def infer(self, request, datastore=None):
        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(status_code=404, detail=f"no model {model!r}; models: {sorted(self._infers)}")
        image = request.get("image")
        store = datastore or self.datastore()
        if isinstance(image, str) and not os.path.exists(image) and not store.get_image_uri(image):
            raise HTTPException(status_code=404, detail=f"image {image!r} is not in the datastore")
        try:
            return super().infer(request, datastore)
        except ImageReadError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None
        except (DatasetLayoutError, WeightsError) as err:
            raise HTTPException(status_code=409, detail=str(err)) from None

    def next_sample(self, request):
        strategy = request.get("strategy") or "random"
        if strategy not in self._strategies:
            raise HTTPException(status_code=404,
                                detail=f"no strategy {strategy!r}; strategies: {sorted(self._strategies)}")
        return super().next_sample(request)
