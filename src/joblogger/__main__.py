"""``python -m joblogger``: the same as the ``joblogger`` command."""

import sys

from .cli import main

sys.exit(main())
