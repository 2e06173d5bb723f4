"""Transforms in MONAI's array + dictionary forms, per modality.

- :mod:`medfound.transforms.spinal`: spinal cord MRI (rater consensus, orientation,
  cord-centred crop, per-slice normalisation, axial slices).
- :mod:`medfound.transforms.mixing`: CutMix box masks and region rotation for DAC
  (functional batch forms, array and dictionary transforms).
"""
