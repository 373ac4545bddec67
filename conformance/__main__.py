"""``python -m flowcore.conformance``: the same as ``flowcore-conformance``."""

import sys

from .cli import main

sys.exit(main())
