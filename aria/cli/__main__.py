"""``python -m aria.cli``: run one command in this process, unsupervised (see aria.runtime)."""

import sys

from aria.cli import main

sys.exit(main())
