"""MONAI transforms per modality (array and dictionary forms).

Modules: :mod:`~medfound.transforms.intensity` (BT.601 luma, Gaussian blur, green channel, CLAHE,
percentile normalisation), :mod:`~medfound.transforms.common` (aspect-preserving resize with
padding, encoder input, mask binarisation, axis swap), :mod:`~medfound.transforms.checks` (input
checks: finite values, label/image agreement, orientation), :mod:`~medfound.transforms.tomography`
(CT windows, MR normalisation, resampling, 3D-to-2D slice sampling), :mod:`~medfound.transforms.xray`
(window/level, inversion), :mod:`~medfound.transforms.microscopy` (channel normalisation,
tiling and blended re-assembly, instance masks to boxes), :mod:`~medfound.transforms.fundus`
(field of view, optic disc, disc/cup masks) and :mod:`~medfound.transforms.presets` (one training
or inference pipeline per modality);
:mod:`medfound.transforms.spinal`: spinal cord MRI (rater consensus, orientation, cord-centred
crop, per-slice normalisation, axial slices); :mod:`medfound.transforms.mixing`: CutMix box masks
and region rotation for DAC (functional batch forms, array and dictionary transforms);
:mod:`medfound.transforms.regions`: class-index maps to region masks (metrics, validation).

Example
-------
>>> from medfound.transforms import get_preset
>>> [type(t).__name__ for t in get_preset("fundus", mode="infer", load=False).transforms][:3]
['ToEncoderInputd', 'DecodeDiscCupd', 'FieldOfViewCropd']
"""

from __future__ import annotations

from medfound.transforms.checks import *  # noqa: F401,F403
from medfound.transforms.common import *  # noqa: F401,F403
from medfound.transforms.fundus import *  # noqa: F401,F403
from medfound.transforms.intensity import *  # noqa: F401,F403
from medfound.transforms.microscopy import *  # noqa: F401,F403
from medfound.transforms.mixing import *  # noqa: F401,F403
from medfound.transforms.presets import *  # noqa: F401,F403
from medfound.transforms.regions import *  # noqa: F401,F403
from medfound.transforms.spinal import *  # noqa: F401,F403
from medfound.transforms.tomography import *  # noqa: F401,F403
from medfound.transforms.xray import *  # noqa: F401,F403
