"""python -m hmi --socket PATH: the touchscreen process."""

import os
import sys

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from .app import main  # noqa: E402

sys.exit(main())
