"""``python -m ml_dash`` is the ``ml-dash`` command."""

import sys

from .cli import main

sys.exit(main())
