"""``python -m tiedsci`` runs the command line."""

import sys

from tiedsci.cli import main

sys.exit(main())
