"""gunicorn settings. The local executor's slots live in the worker, so one worker with
threads is the default; each extra worker claims its own slots (and uids)."""

import os
import sys

from backend.config import SettingsError, load_settings, server_setting

# Check every setting in the master, before any worker forks: a bad value stops the
# start with one line naming the variable.
try:
    load_settings()
except SettingsError as exc:
    print(f"invalid setting: {exc}", file=sys.stderr, flush=True)
    sys.exit(1)

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "1"))
threads = int(os.environ.get("WEB_THREADS", "64"))
# Above the longest compile (10 s) + run (3 s) + queue wait (30 s); gthread workers stay
# responsive to the arbiter while requests block, so this only catches a stuck worker.
timeout = int(server_setting("WEB_TIMEOUT_S", "120", old_env="WEB_TIMEOUT"))
graceful_timeout = 30
keepalive = 5
accesslog = None  # the app writes its own JSON access lines
# gunicorn 27's control socket has one default path per user; several services (or test
# servers) on one machine would clash on it. Nothing here uses it.
control_socket_disable = True
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def worker_exit(server, worker):
    """After in-flight requests finished (graceful_timeout): kill sandboxes, release sessions."""
    state = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("piston")
    if state is not None:
        state.close()
