"""WSGI entry point: `gunicorn -c gunicorn.conf.py app:app`."""

import sys

from backend import create_app
from backend.config import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    # One clear line naming the variable, instead of a traceback.
    print(f"invalid setting: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(4) from None  # gunicorn's "app failed to load": stop, do not respawn
