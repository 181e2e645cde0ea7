"""``python -m wsp``: the same as the ``wsp`` command."""

import sys

from wsp.cli import main

sys.exit(main())
