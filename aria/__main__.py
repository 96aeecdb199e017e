"""``python -m aria``: the same as the ``aria`` command (supervised, see :mod:`aria.runtime`)."""

import sys

from aria.cli import entry

sys.exit(entry())
