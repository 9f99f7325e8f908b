"""``python -m bench``: see ``bench.cli`` and ``bench.runner``."""

import sys

from bench.cli import main

sys.exit(main())
