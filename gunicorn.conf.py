"""gunicorn settings. The local executor's slots live in the worker, so one worker with
threads is the default; each extra worker claims its own slots (and uids)."""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "1"))
threads = int(os.environ.get("WEB_THREADS", "64"))
# Above the longest compile (10 s) + run (3 s) + queue wait (30 s); gthread workers stay
# responsive to the arbiter while requests block, so this only catches a stuck worker.
timeout = int(os.environ.get("WEB_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
