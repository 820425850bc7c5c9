"""``python -m edsync``."""

import sys

from edsync.cli import main

sys.exit(main())
