"""WSGI entry point: `gunicorn -c gunicorn.conf.py app:app`."""

from backend import create_app

app = create_app()
