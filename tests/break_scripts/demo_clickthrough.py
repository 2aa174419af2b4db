"""Hostile review: start `python app.py` (demo) as a process and click report -> release with
requests, as an outsider would. Usage: python tests/break_scripts/demo_clickthrough.py [halon5|halon6]"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.altcha import solve_altcha  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
gateway = sys.argv[1] if len(sys.argv) > 1 else ""
port = 5000 + (os.getpid() % 1000) + 100
env: dict[str, str] = {**os.environ, "PORT": str(port)}
env.pop("RELEASE_CONFIG", None)
if gateway:
    env["DEMO_GATEWAY"] = gateway
proc = subprocess.Popen(
    [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
)
base = f"http://127.0.0.1:{port}"
try:
    s = requests.Session()
    for _ in range(100):
        try:
            if s.get(base + "/demo/", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    index = s.get(base + "/demo/").text
    generation = re.search(r"[Hh]alon ?[56][^<]{0,20}", index)
    print("demo page mentions:", generation.group(0) if generation else "?")
    report_links = [html.unescape(u) for u in re.findall(r'href="(http[^"]*/report\?[^"]+)"', index)]
    print("report links:", len(report_links))
    link = report_links[0]
    page = s.get(link)
    print("report page", page.status_code)
    token = re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)[0]
    challenge = s.get(base + "/captcha/altcha-challenge").json()
    r = s.post(
        link,
        data={"csrf_token": token, "comment": "We met at the fair.", "altcha": solve_altcha(challenge)},
        allow_redirects=True,
    )
    print("submit ->", r.status_code, r.url.replace(base, ""))
    deadline = time.time() + 15
    release_urls: list[str] = []
    while time.time() < deadline and not release_urls:
        mail = s.get(base + "/demo/mail").text
        release_urls = sorted(set(re.findall(r"https?://[^\s\"<]+/release/[A-Za-z0-9_-]{43}", html.unescape(mail))))
        time.sleep(0.3)
    print("release links in captured mail:", len(release_urls))
    rel = release_urls[0]
    page = s.get(rel)
    token = re.findall(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)[0]
    choice = "release"
    r = s.post(rel, data={"csrf_token": token, "choice": choice})
    print("release ->", r.status_code)
    state = None
    for _ in range(50):
        state = s.get(rel + "/status").json()
        if state.get("final") or state.get("state") in ("released", "failed", "awaiting_approval"):
            break
        time.sleep(0.2)
    print("status:", state)
    sim = re.search(r'href="(http://127\.0\.0\.1:\d+/?)"', index)
    print("simulator overview:", sim.group(1) if sim else "?")
    if sim:
        ov = requests.get(sim.group(1), timeout=5)
        print("simulator overview", ov.status_code)
finally:
    proc.terminate()
    out, _err = proc.communicate(timeout=10)
    errors = [ln for ln in out.splitlines() if "Traceback" in ln or " 500 " in ln or "ERROR" in ln]
    print("server errors:", errors[:5])
