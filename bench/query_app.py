"""The floor bench/web.py also measures: bare Flask plus the report page's one indexed query.

`gunicorn --pythonpath bench query_app:app` with RELEASE_CONFIG set: one view that reads
the report for a (node, message id) nobody reported, through the service's own Database (same
pool, liveness check and read session) and statement, and answers "none". No template, no form, no
session, no hooks: what any page that reads the database once per visit costs at least.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from release.db import Database  # noqa: E402
from release.report_view import SUMMARY_BY_LINK  # noqa: E402

with open(os.environ["RELEASE_CONFIG"], "rb") as config:
    db = Database(tomllib.load(config)["database"]["url"])

app = Flask(__name__)


@app.get("/")
def lookup() -> str:
    with db.read_sessions() as session:  # what a GET of the service reads through
        row = session.execute(SUMMARY_BY_LINK, {"node": "mx1", "message_id": "never-reported"}).first()
    return "none" if row is None else str(row.state)
