"""``python -m medfound`` runs the ``medfound`` command."""

import sys

from medfound.cli import main

sys.exit(main())
