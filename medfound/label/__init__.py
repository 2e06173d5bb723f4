"""MONAI Label plugin: DAC bundles served, trained on a datastore's labelled and unlabelled images.

- :mod:`medfound.label.bundle`: the seam to the DAC bundles (their ``inference.json`` and
  ``train.json`` are the one source of truth); needs only MONAI.
- :mod:`medfound.label.studies`: a studies folder (some images labelled) from a dataset; needs only MONAI.
- :mod:`medfound.label.infer`: the inference task (results in the input's format; DICOM-SEG
  for DICOM series, :mod:`medfound.label.dicom_seg`).
- :mod:`medfound.label.train`: semi-supervised DAC training from the datastore.
- :mod:`medfound.label.activelearning`: A/B co-training disagreement scoring and strategy.
- :mod:`medfound.label.datastore`: the local datastore with DICOM series folders as images.
- :mod:`medfound.label.umedpt`: a UMedPT foundation-encoder model.
- :mod:`medfound.label.app`: the app (``apps/medfound_label/main.py`` loads it).

All but ``bundle`` and ``studies`` need the ``label`` extra (MONAI Label 0.8.5 and its pins).
"""
