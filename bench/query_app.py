"""The floor bench/web.py also measures: bare Flask plus the report page's one indexed query.

`gunicorn --pythonpath bench query_app:app` with RELEASE_CONFIG set: one view that reads
the report for a (node, message id) nobody reported, the way the service reads it (the same
statement in a read-only Session on the reader pool: ReportSummaries), and answers "none".
No template, no form, no cookie session, no hooks: what any page that reads the database
once per visit costs at least.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from flask import Flask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from release.core.summaries import ReportSummaries  # noqa: E402
from release.db.engine import Database  # noqa: E402

with open(os.environ["RELEASE_CONFIG"], "rb") as config:
    summaries = ReportSummaries(Database(tomllib.load(config)["database"]["url"]))

app = Flask(__name__)


@app.get("/")
def lookup() -> str:
    report = summaries.find("mx1", "never-reported")
    return "none" if report is None else report.state
