"""Hostile mail through the release page's preview, in real Chromium with JavaScript on.

Each vector of tests/support/xss_corpus.py (the OWASP filter evasion cheat sheet, mutation
XSS, CSS exfiltration, hostile headers, names and attachments), in each place it is sent, is
held as its own message with its own release token on one live server (a thread holds them
ahead of the browser), and its release page is opened in one page of one browser context,
navigated from each release page to the next; the test hovers over the frame, clicks its
links and presses Tab. A real "attacker" HTTP server listens on another address (127.0.0.2);
every payload that would run script or load anything names it. For every case:

(a) no dialog opens;
(b) the browser asks nothing of any origin but the app's, and the attacker hears nothing;
(c) the top page's title, ``window.__xss`` and address are unchanged (and the frame's);
(d) no payload script writes to the console and no script error occurs (Content Security
    Policy reports are counted, not failed);
(e) the frame keeps ``sandbox=""``, its document is out of the page's reach, and it holds
    no <script>;
(f) the frame requests nothing but its own document: no image, style sheet or font;
(g) what the sanitiser let through holds nothing live: no script-capable element, event
    handler, URL-bearing attribute or url() in style, in the frame or in the page's preview;
(h) outside the HTML body the payload is shown as text, literally.

The totals (vectors, cases, results per check, CSP reports, the sandbox's "Blocked script
execution" reports while the page loaded) are printed at the end. A canary first proves the
detectors see a payload that does run. The test's own clicks in the frame make Chromium
report blocked script there (they do so on the genuine invoice's frame too, which has no
script at all): those reports are not counted.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.support.previews import PreviewSite
from tests.support.xss_corpus import ATTACHMENT, CORPUS, HTML, JS_MARK, Case, cases, expected_text, message, render

pytestmark = pytest.mark.browser

CASES = list(cases())
SETTLE_MS = 100  # after load: meta refresh 0, marquee and animation starts, timers of 0 ms
CHECKS = {
    "a": "no dialog",
    "b": "no request outside the app's origin, no attacker hit",
    "c": "title, window.__xss and address unchanged",
    "d": "no script ran (console, page errors)",
    "e": "frame sandboxed, out of reach, no <script>",
    "f": "frame requests only its own document (no images)",
    "g": "nothing live in the frame's or the page's DOM",
    "h": "shown as text outside the HTML body",
}

# Elements that can run script, load something, submit or reach outside the frame.
LIVE_ELEMENTS = [
    *("script", "iframe", "frame", "frameset", "object", "embed", "applet", "link", "base", "form", "input"),
    *("button", "textarea", "select", "isindex", "keygen", "svg", "math", "video", "audio", "source", "picture"),
    *("track", "portal", "template", "noscript", "style", "meta", "title", "marquee", "details", "animate"),
    *("set", "image", "use", "foreignobject", "xml", "bgsound", "layer", "ilayer", "noembed", "noframes", "xmp"),
    *("plaintext", "map", "area", "canvas", "slot", "dialog"),
]
URL_ATTRIBUTES = [
    *("src", "srcset", "href", "xlink:href", "action", "formaction", "data", "background", "poster", "codebase"),
    *("dynsrc", "lowsrc", "ping", "srcdoc", "manifest", "code", "archive", "profile", "longdesc", "usemap"),
    *("datasrc", "imagesrcset", "to", "values", "from", "by", "attributename", "http-equiv", "content"),
]
# Run in the frame (Playwright reaches it through DevTools; the page's own scripts cannot).
FRAME_AUDIT = """([live, urlAttributes]) => {
  const found = [], residue = [];
  const liveSet = new Set(live), urlSet = new Set(urlAttributes);
  const risky = /url\\s*\\(|expression|@import|image-set|behavior|binding|javascript:|\\\\/i;
  const headOwn = (el) => el.parentElement === document.head && ["meta", "title", "style"].includes(el.localName);
  for (const el of document.querySelectorAll("*")) {
    const name = el.localName;
    if (liveSet.has(name) && !headOwn(el)) found.push("<" + name + ">");
    for (const a of el.attributes) {
      const n = a.name.toLowerCase();
      if (name === "meta" && headOwn(el) && n === "charset") continue;
      if (n.startsWith("on") || urlSet.has(n)) found.push(name + "[" + n + "=" + a.value.slice(0, 60) + "]");
      if (n === "style" && risky.test(a.value)) residue.push(name + "[style=" + a.value.slice(0, 100) + "]");
    }
    const style = getComputedStyle(el);
    for (const p of ["background-image", "list-style-image", "border-image-source", "mask-image", "cursor",
                     "filter", "content"]) {
      const v = style.getPropertyValue(p);
      if (v && v.includes("url(")) found.push(name + " " + p + ": " + v.slice(0, 80));
    }
  }
  for (const sheet of document.styleSheets) {
    for (const rule of sheet.cssRules) {
      if (/url\\(|@import|@font-face|image-set/i.test(rule.cssText)) found.push("css: " + rule.cssText.slice(0, 80));
    }
  }
  return {found, residue, scripts: document.querySelectorAll("script").length, title: document.title,
          xss: typeof window.__xss};
}"""
PAGE_AUDIT = """(live) => {
  const found = [];
  for (const el of document.querySelectorAll("*")) {
    for (const a of el.attributes) {
      if (a.name.toLowerCase().startsWith("on")) found.push(el.localName + "[" + a.name + "]");
    }
  }
  const preview = document.getElementById("preview");
  if (preview) {
    for (const el of preview.querySelectorAll(live.join(",") + ",img,[href],[src],[style]")) {
      if (!el.matches("iframe.preview-frame")) found.push("#preview " + el.outerHTML.slice(0, 80));
    }
  }
  const scripts = [...document.scripts].map((s) => s.getAttribute("src") || "inline:" + s.text.slice(0, 40));
  const frames = [...document.querySelectorAll("iframe")];
  const frame = document.querySelector("iframe.preview-frame");
  // The frame is cross-origin to the page (an opaque origin): touching its document throws.
  let reachable = null;
  if (frame) {
    try {
      reachable = frame.contentDocument !== null || !!frame.contentWindow.document;
    } catch (e) {
      reachable = false;
    }
  }
  return {found, reachable, scripts, title: document.title, xss: typeof window.__xss, iframes: frames.length,
          sandbox: frame ? frame.getAttribute("sandbox") : null, tokens: frame ? frame.sandbox.length : null,
          text: preview ? preview.innerText : "",
          subject: document.getElementById("preview-subject")?.textContent ?? null};
}"""


# Where the mouse hovers: inside the frame, near its top.
FRAME_BOX = """() => {
  const frame = document.querySelector("iframe.preview-frame");
  if (!frame) return null;
  const r = frame.getBoundingClientRect();
  return [r.left + r.width / 2, r.top + 20];
}"""


class Attacker:
    """A real HTTP server on 127.0.0.2 that records every request it gets."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.server = make_server("127.0.0.2", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name="attacker-http", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.2:{self.server.server_port}"

    def hits_for(self, name: str) -> list[str]:
        return [hit for hit in list(self.hits) if name in hit]

    @Request.application  # type: ignore[arg-type]
    def _app(self, request: Request) -> Response:
        self.hits.append(request.full_path)
        if request.path.endswith(".js"):
            return Response(render("%JS%", "script-file", self.origin), content_type="text/javascript")
        if request.path.endswith(".css"):
            return Response(f"body{{background:url({self.origin}/hit?css-file)}}", content_type="text/css")
        if request.path == "/canary":
            canary = (
                '<title>canary</title><link rel="icon" href="data:,"><script>%JS%</script>'
                "<iframe srcdoc=\"<img src='%HIT%-frame-image'>\"></iframe>"
            )
            return Response(render(canary, "canary", self.origin), content_type="text/html")
        return Response("hit", content_type="text/plain")


@dataclass
class Seen:
    """What one visit observed."""

    start: str = ""
    dialogs: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # (url, type, from the top frame)
    console: list[tuple[str, str, str]] = field(default_factory=list)  # (type, text, source URL)
    errors: list[str] = field(default_factory=list)
    title: str = ""
    expected_title: str = ""
    url: str = ""
    frame_urls: list[str] = field(default_factory=list)
    page: dict[str, Any] = field(default_factory=dict)
    frame: dict[str, Any] | None = None
    reachable: bool | None = None
    console_at_load: int = 0  # console messages before the test clicked anything


class Browsing:
    """One context and page with JavaScript on, reused vector after vector (its HTTP cache
    keeps the app's style sheets warm); each visit records into its own :class:`Seen`."""

    def __init__(self, browser: Any) -> None:
        self.seen = Seen()
        self.context = browser.new_context(viewport={"width": 1000, "height": 800})
        self.context.set_default_timeout(15_000)
        self.context.on("request", self._request)  # the context sees the frames' requests too
        self.page = self.context.new_page()
        self.page.on("dialog", self._dialog)
        self.page.on("console", lambda m: self.seen.console.append((m.type, m.text, m.location.get("url", ""))))
        self.page.on("pageerror", lambda error: self.seen.errors.append(str(error)))

    def _request(self, request: Any) -> None:
        try:
            top = request.frame.parent_frame is None
        except Exception:  # noqa: BLE001 - a service worker's request has no frame
            top = False
        self.seen.requests.append((request.url, request.resource_type, top))

    def _dialog(self, dialog: Any) -> None:
        self.seen.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def visit(self, url: str, *, interact: bool = True) -> Seen:
        """Open ``url``, poke the frame (hover, click its links, Tab), let the page settle,
        and record everything. Whatever the page does after this lands in the next visit's
        record, where it fails that case rather than pass unseen."""
        seen = self.seen = Seen(start=url)
        page = self.page
        response = page.goto(url, wait_until="load")
        assert response is not None and response.ok, url
        loaded = time.monotonic()
        seen.console_at_load = len(seen.console)
        found = re.search(r"<title>(.*?)</title>", response.text(), re.S)
        seen.expected_title = html.unescape(found.group(1)) if found else ""
        frames = [f for f in page.frames if f.parent_frame is not None]
        if interact and frames:
            box = page.evaluate(FRAME_BOX)
            if box:
                page.mouse.move(box[0], box[1])
            frames[0].locator("a").evaluate_all("links => links.slice(0, 5).forEach((a) => a.click())")
            page.keyboard.press("Tab")
        page.wait_for_timeout(max(0.0, SETTLE_MS - (time.monotonic() - loaded) * 1000))
        seen.url = page.url
        seen.frame_urls = [f.url for f in page.frames if f.parent_frame is not None]
        seen.page = page.evaluate(PAGE_AUDIT, [e for e in LIVE_ELEMENTS if e != "details"])  # the text's toggle
        seen.title, seen.reachable = seen.page["title"], seen.page["reachable"]
        frames = [f for f in page.frames if f.parent_frame is not None]
        if frames:
            seen.frame = frames[0].evaluate(FRAME_AUDIT, [LIVE_ELEMENTS, URL_ATTRIBUTES])
        return seen

    def close(self) -> None:
        self.context.close()


class Holder:
    """Holds every case's message on the site from a thread, in order, while the browser
    works through the ones already held: ``url(case)`` waits for that case's release page."""

    def __init__(self, site: PreviewSite, origin: str, todo: list[Case]) -> None:
        self.site, self.origin, self.todo = site, origin, todo
        self.urls: dict[str, str | BaseException] = {}
        self.ready = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="xss-holder", daemon=True)

    def _run(self) -> None:
        for case in self.todo:
            if self.stopping:
                return
            try:
                result: str | BaseException = self.site.hold(message(case, self.origin))
            except BaseException as error:  # noqa: BLE001 - handed to the test that waits for it
                result = error
            with self.ready:
                self.urls[case.id] = result
                self.ready.notify_all()

    def url(self, case: Case) -> str:
        with self.ready:
            assert self.ready.wait_for(lambda: case.id in self.urls, timeout=60), f"{case.id} was not held"
            result = self.urls[case.id]
        if isinstance(result, BaseException):
            raise result
        return result


@dataclass
class Tally:
    """Results over the module: per check, how many cases passed; CSP reports per case."""

    started: float = field(default_factory=time.monotonic)
    cases: list[str] = field(default_factory=list)
    passed: Counter[str] = field(default_factory=Counter)
    failed: dict[str, list[str]] = field(default_factory=dict)
    csp: dict[str, int] = field(default_factory=dict)
    sandbox_blocks: dict[str, int] = field(default_factory=dict)
    residue: dict[str, list[str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    server = Attacker()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture(scope="module")
def selected(request: pytest.FixtureRequest) -> list[Case]:
    """The cases this session runs (all, unless -k or a node id chose some), in order."""
    mine = [item for item in request.session.items if getattr(item, "originalname", "") == CORPUS_TEST]
    return [item.callspec.params["case"] for item in mine]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def holder(preview_site: PreviewSite, attacker: Attacker, selected: list[Case]) -> Iterator[Holder]:
    held = Holder(preview_site, attacker.origin, selected)
    held.thread.start()
    yield held
    held.stopping = True
    held.thread.join(timeout=60)


@pytest.fixture(scope="module")
def browsing(browser: Any) -> Iterator[Browsing]:
    session = Browsing(browser)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="module")
def tally() -> Tally:
    return Tally()


def _console_kind(kind: str, text: str, source: str) -> str:
    if JS_MARK in text:
        return "ran"
    if "Content Security Policy" in text:
        return "csp"
    if "sandboxed" in text and "allow-" in text:
        return "sandbox"
    if source.endswith("/favicon.ico") and "404" in text:
        return "favicon"
    return "other"


def judge(case: Case, seen: Seen, site: PreviewSite, attacker: Attacker) -> dict[str, list[str]]:
    """Each check's problems for one case (an empty list: it passed)."""
    own = site.url + "/"
    kinds = [(_console_kind(*m), m[1]) for m in seen.console]
    frame_requests = [(u, t) for u, t, top in seen.requests if not top]
    problems: dict[str, list[str]] = {key: [] for key in CHECKS}
    problems["a"] = seen.dialogs
    problems["b"] = [u for u, _t, _top in seen.requests if not u.startswith(own)]
    problems["b"] += [f"attacker got {hit}" for hit in attacker.hits_for(case.vector.name)]
    if seen.title != seen.expected_title:
        problems["c"].append(f"title {seen.title!r}, expected {seen.expected_title!r}")
    if seen.page["xss"] != "undefined":
        problems["c"].append("window.__xss was set in the page")
    if seen.url != seen.start:
        problems["c"].append(f"the page went to {seen.url}")
    if seen.frame is not None:
        if seen.frame["xss"] != "undefined":
            problems["c"].append("window.__xss was set in the frame")
        if seen.frame["title"] != seen.page["subject"]:  # the frame's title is the mail's subject
            problems["c"].append(f"frame title {seen.frame['title']!r}, subject {seen.page['subject']!r}")
    if any(not u.startswith(own + "preview/") for u in seen.frame_urls):
        problems["c"].append(f"the frame went to {seen.frame_urls}")
    problems["d"] = [text for kind, text in kinds if kind in ("ran", "other")] + seen.errors
    if seen.page["scripts"] != ["/static/js/status.js"]:
        problems["d"].append(f"page scripts {seen.page['scripts']}")
    if seen.frame is not None:
        if seen.page["sandbox"] != "" or seen.page["tokens"] != 0:
            problems["e"].append(f"sandbox={seen.page['sandbox']!r} ({seen.page['tokens']} tokens)")
        if seen.reachable is not False:
            problems["e"].append("the page can reach the frame's document")
        if seen.frame["scripts"]:
            problems["e"].append(f"{seen.frame['scripts']} <script> in the frame")
    if seen.page["iframes"] != (0 if seen.frame is None else 1):
        problems["e"].append(f"{seen.page['iframes']} iframes on the page")
    own_document = [(u, t) for u, t in frame_requests if t == "document" and u.startswith(own + "preview/")][:1]
    problems["f"] = [f"{t} {u}" for u, t in frame_requests if (u, t) not in own_document]
    problems["g"] = list(seen.page["found"]) + (list(seen.frame["found"]) if seen.frame else [])
    if case.place not in (HTML, ATTACHMENT):
        # Names and link texts are cut at 200 characters: the start must be there, as text.
        shown = expected_text(case, attacker.origin)[:150]
        if shown not in " ".join(seen.page["text"].split()):
            problems["h"].append(f"the page does not show {shown!r}")
    return problems


def test_the_detectors_see_a_payload_that_runs(browser: Any, attacker: Attacker) -> None:
    """A canary page on the attacker's origin runs %JS% and loads an image from a child
    frame: every detector this module relies on sees it, the frame's request included."""
    session = Browsing(browser)
    try:
        seen = session.visit(f"{attacker.origin}/canary", interact=False)
    finally:
        session.close()
    assert any("alert" in d for d in seen.dialogs), seen.dialogs
    assert seen.title == "pwned"
    assert any(JS_MARK in text for _kind, text, _source in seen.console), seen.console
    assert any(u.endswith("canary-frame-image") and t == "image" and not top for u, t, top in seen.requests)
    assert attacker.hits_for("canary") and attacker.hits_for("canary-frame-image")
    attacker.hits.clear()  # the rest of the module expects none


CORPUS_TEST = "test_a_hostile_mail_runs_nothing_and_loads_nothing"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_mail_runs_nothing_and_loads_nothing(
    case: Case, holder: Holder, browsing: Browsing, preview_site: PreviewSite, attacker: Attacker, tally: Tally
) -> None:
    seen = browsing.visit(holder.url(case))
    problems = judge(case, seen, preview_site, attacker)
    tally.cases.append(case.id)
    for key, found in problems.items():
        if found:
            tally.failed.setdefault(key, []).append(case.id)
        else:
            tally.passed[key] += 1
    csp = sum(1 for m in seen.console if _console_kind(*m) == "csp")
    blocks = sum(1 for m in seen.console[: seen.console_at_load] if _console_kind(*m) == "sandbox")
    if csp:
        tally.csp[case.id] = csp
    if blocks:
        tally.sandbox_blocks[case.id] = blocks
    failures = {f"({key}) {CHECKS[key]}": found for key, found in problems.items() if found}
    assert not failures, f"VECTOR GOT THROUGH: {case.id}: {failures}"
    residue = seen.frame["residue"] if seen.frame else []
    if residue:
        tally.residue[case.id] = residue
    assert not residue, f"SANITISER KEPT url()/expression() in a style attribute: {case.id}: {residue}"


def test_summary(tally: Tally, attacker: Attacker, capsys: pytest.CaptureFixture[str]) -> None:
    """How many vectors and cases were checked, each check's results and the CSP reports."""
    if not tally.cases:
        pytest.skip("no vector ran")
    elapsed = time.monotonic() - tally.started
    vectors = {c.split("@")[0] for c in tally.cases}
    hits = list(attacker.hits)
    lines = [
        f"XSS corpus: {len(vectors)} of {len(CORPUS)} vectors, {len(tally.cases)} of {len(CASES)} cases "
        f"(vector x place) checked in {elapsed:.0f} s",
        *(
            f"  ({key}) {text}: {tally.passed[key]} passed, {len(tally.failed.get(key, []))} failed"
            + (f" {tally.failed[key]}" if tally.failed.get(key) else "")
            for key, text in CHECKS.items()
        ),  # fmt: skip
        f"  CSP violation reports in the console: {sum(tally.csp.values())} in {len(tally.csp)} cases {tally.csp}",
        f"  sandbox blocks in the console: {sum(tally.sandbox_blocks.values())} in {len(tally.sandbox_blocks)} "
        f"cases {tally.sandbox_blocks}",
        f"  inert url()/expression() kept in style attributes: {len(tally.residue)} cases {sorted(tally.residue)}",
        f"  attacker hits (the canary's excluded): {len(hits)} {hits}",
    ]
    with capsys.disabled():
        print("\n" + "\n".join(lines))  # noqa: T201
    assert not hits
    assert not tally.failed
