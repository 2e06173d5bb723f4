"""medfound's MONAI Label app folder: ``monailabel start_server --app apps/medfound_label --studies <images>``.

The app lives in :mod:`medfound.label.app`; MONAI Label loads the ``MONAILabelApp`` subclass
found in this ``main.py`` and writes ``model/``, ``logs/``, ``lib/`` and ``bin/`` next to it.
"""

from medfound.label.app import MedfoundLabelApp

__all__ = ["MedfoundLabelApp"]
