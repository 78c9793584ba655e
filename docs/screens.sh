#!/bin/sh
# Regenerate the screenshots of every HMI screen (800x480 and 1024x768) into docs/screens/.
# Headless: SDL's dummy video driver; needs the hmi extra (pip install -e '.[hmi]').
set -eu
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
rm -rf docs/screens
SDL_VIDEODRIVER=dummy SDL_AUDIODRIVER=dummy PYGAME_HIDE_SUPPORT_PROMPT=1 "$PY" -m hmi.samples docs/screens
rm -rf docs/screens/_pictures
