"""``python -m ldm``: the command line (see :mod:`ldm.pipeline.cli`)."""

import sys

from ldm.pipeline.cli import main

sys.exit(main())
