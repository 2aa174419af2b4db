"""The bare Flask app bench/web.py compares against: `gunicorn --pythonpath bench hello_app:app`."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "hello"
