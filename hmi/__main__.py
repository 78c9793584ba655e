"""python -m hmi --socket PATH: the touchscreen process."""

import sys

from .app import main

sys.exit(main())
