"""Transforms for colour fundus photographs.

- :mod:`~medfound.transforms.fundus.field_of_view`: the camera's circular field of view (FOV) as a
  mask, and a crop to it (square by default); the crop inverts with ``Invertd``.
- :mod:`~medfound.transforms.fundus.optic_disc`: the optic disc located by brightness, and a
  fixed-size region of interest centred on it (from a disc mask when there is one).
- :mod:`~medfound.transforms.fundus.disc_cup`: the common disc/cup mask encoding (0 cup, 128 rim,
  255 background, as in REFUGE, Drishti-GS, RIM-ONE and the DoFE release) to disc and cup
  channels or to classes 0 background, 1 rim, 2 cup, and back.

Green channel, CLAHE, luma and blur are not fundus-specific: :mod:`medfound.transforms.intensity`.

Example
-------
>>> import torch
>>> from medfound.transforms.fundus import DecodeDiscCup
>>> DecodeDiscCup(output="index")(torch.tensor([[[255, 128, 0]]], dtype=torch.uint8)).tolist()
[[[0.0, 1.0, 2.0]]]
"""

from __future__ import annotations

from medfound.transforms.fundus.disc_cup import (
    DISC_CUP_VALUES,
    DecodeDiscCup,
    DecodeDiscCupD,
    DecodeDiscCupd,
    DecodeDiscCupDict,
    EncodeDiscCup,
    EncodeDiscCupD,
    EncodeDiscCupd,
    EncodeDiscCupDict,
    disc_from_mask,
)
from medfound.transforms.fundus.field_of_view import (
    FieldOfViewCrop,
    FieldOfViewCropD,
    FieldOfViewCropd,
    FieldOfViewCropDict,
    FieldOfViewMask,
    FieldOfViewMaskD,
    FieldOfViewMaskd,
    FieldOfViewMaskDict,
    fov_mask,
)
from medfound.transforms.fundus.optic_disc import (
    OpticDiscCrop,
    OpticDiscCropD,
    OpticDiscCropd,
    OpticDiscCropDict,
    locate_optic_disc,
)

__all__ = [
    "fov_mask",
    "FieldOfViewMask",
    "FieldOfViewMaskd",
    "FieldOfViewMaskD",
    "FieldOfViewMaskDict",
    "FieldOfViewCrop",
    "FieldOfViewCropd",
    "FieldOfViewCropD",
    "FieldOfViewCropDict",
    "locate_optic_disc",
    "OpticDiscCrop",
    "OpticDiscCropd",
    "OpticDiscCropD",
    "OpticDiscCropDict",
    "DISC_CUP_VALUES",
    "disc_from_mask",
    "DecodeDiscCup",
    "DecodeDiscCupd",
    "DecodeDiscCupD",
    "DecodeDiscCupDict",
    "EncodeDiscCup",
    "EncodeDiscCupd",
    "EncodeDiscCupD",
    "EncodeDiscCupDict",
]
