"""``python -m symbptt …`` runs the command line, as the ``symbptt`` script does."""

import sys

from .cli import main

sys.exit(main())
