"""Entry point. `gunicorn app:app` and `flask --app app ...` use `app`; `python app.py` runs
the demo (no config) or a single-process server with an in-process worker (with a config).

A configuration mistake stops each of them with one line naming the key (release/ops/startup.py).
"""

from __future__ import annotations

import os

from release import config_path_from_env, create_app
from release.ops.startup import check_settings, exit_on_config_error

if __name__ == "__main__":
    if config_path_from_env() is None:
        from release.devtools.demo import GATEWAYS, main

        gateway = os.environ.get("DEMO_GATEWAY", "halon6")
        if gateway not in GATEWAYS:
            raise SystemExit(f"DEMO_GATEWAY must be one of {', '.join(GATEWAYS)}, not {gateway!r}")
        main(port=int(os.environ.get("PORT", "5000")), gateway=gateway)
    else:
        from release.ops.serve import main as serve

        check_settings()  # here, once: the server's worker process would only log a traceback
        serve()
else:
    with exit_on_config_error():
        app = create_app()
