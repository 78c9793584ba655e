"""``python -m controller`` is ``evsectl``."""

import sys

from .cli import main

sys.exit(main())
