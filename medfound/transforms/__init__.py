"""MONAI transforms for medfound's modalities (array and dictionary forms)."""

from medfound.transforms.mixing import *  # noqa: F401,F403  (CutMix and region rotation for DAC)
