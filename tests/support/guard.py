"""The guard's walk: for every endpoint and role, a valid request (the baseline), then the
same request with the hostile corpus in each slot (path values, query, form, JSON fields,
documented headers, a raw body), structural abuse (reserved and duplicated parameters,
missing and repeated headers, oversized bodies, wrong content types, broken headers) and
random examples from Hypothesis. Every answer must be below 500 and no traceback may reach
the logs.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.hostile import Hostile, any_text, apply, encode, json_values, path_segment, wire_values
from tests.support.probes import (
    NO_BODY,
    Probe,
    Slot,
    Value,
    slots,
    structural,
    systematic,
    typed,
)
from tests.support.surface import BODY_METHODS, Endpoint, Role, Surface, json_example


@dataclass
class Finding:
    """A 5xx answer or a traceback in the logs."""

    endpoint: str
    role: str
    note: str
    status: int
    detail: str

    def __str__(self) -> str:
        return f"{self.endpoint} as {self.role}: {self.note} -> {self.status} {self.detail}".rstrip()


class TracebackCatcher(logging.Handler):
    """Keeps every ERROR record and every record carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()  # formats every record, as a handler would
        if record.exc_info or record.levelno >= logging.ERROR or "Traceback" in message:
            self.records.append(record)


class Guard:
    """Walks a :class:`Surface` as a set of roles; ``solvers`` fill a form's widget fields
    (a CAPTCHA) as the widget would, given the role's client and the widget's attributes."""

    def __init__(self, surface: Surface, roles: list[Role], solvers: dict[str, Callable[[Role, dict[str, str]], str]],
                 *, random_examples: int = 8) -> None:  # fmt: skip
        self.surface, self.roles, self.solvers = surface, roles, solvers
        self.random_examples = random_examples
        self.findings: list[Finding] = []
        self.sent = 0
        self.cpu_seconds = 0.0  # of the last run: this process's CPU time (the machine may be busy)
        self._common: set[str] | None = None
        self._common_done: set[tuple[str, str, str]] = set()
        self.statuses: Counter[int] = Counter()
        self.by_endpoint: dict[str, Counter[int]] = defaultdict(Counter)
        self.passed: dict[str, set[str]] = defaultdict(set)  # endpoint -> roles that got a non-refusal
        self.catcher = TracebackCatcher()
        self.private = {value for role in roles for value in role.private}
        self.login_paths = {e.rule.rule for e in surface.endpoints.values() if any(
            f.kind == "password" for f in e.form.values())}  # fmt: skip
        # Path values by argument name: what each role saw ("": what anyone may use).
        self.known: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for endpoint in surface.endpoints.values():
            for sighting in endpoint.sightings:
                for name, value in sighting.args:
                    for holder in (sighting.role, "" if value not in self.private else None):
                        if holder is not None and value not in self.known[holder][name]:
                            self.known[holder][name].append(value)

    # ------------------------------------------------------------------ baselines

    def baseline(self, endpoint: Endpoint, role: Role, n: int) -> Probe | None:
        """A valid request for ``endpoint`` as ``role`` (the n-th of the values known), or None
        when no path value routes to this rule.

        Path values and queries the role saw on this endpoint come first; then, per argument
        name, values the role holds from elsewhere (a recipient's token also opens the API's
        release status), then what other roles saw (never their credentials), then defaults."""
        own = [s for s in endpoint.sightings if s.role == role.name]
        lent = [s for s in endpoint.sightings if s.role != role.name and not self._private(s)]
        query: list[tuple[str, Value]] = []
        args: dict[str, Value] = {}
        if own:
            sighting = own[n % len(own)]
            args, query = dict(sighting.args), list(sighting.query)
        else:
            if lent:
                query = list(lent[n % len(lent)].query)
            defaults = endpoint.default_args(self.surface.adapter)
            for name in sorted(endpoint.rule.arguments):
                held = self.known[role.name].get(name) or self.known[""].get(name)
                if held:
                    args[name] = held[n % len(held)]
                elif defaults is not None:
                    args[name] = defaults[name]
            if endpoint.rule.arguments and not self._routes(endpoint, args):
                if defaults is None:
                    return None
                args = dict(defaults)
        present = {name for name, _ in query}
        query += [(name, value) for name, value in endpoint.query_defaults.items() if name not in present]
        if role.fresh_query and endpoint.method in BODY_METHODS:
            fresh = role.fresh_query()
            if set(fresh) <= endpoint.query:
                query = [(k, v) for k, v in query if k not in fresh] + list(fresh.items())
        probe = Probe("baseline", args, query, headers={**endpoint.headers, **role.headers})
        if endpoint.method in BODY_METHODS:
            if endpoint.raw is not None:
                probe.content_type, probe.body = endpoint.raw
            probe.form = [(f.name, role.csrf if f.name == "csrf_token" else typed(f.kind, f.values[n % len(f.values)]))
                          for f in endpoint.form.values()]  # fmt: skip
            if endpoint.json is not None:
                probe.json = json_example(endpoint.json)
                if role.fresh_query and isinstance(probe.json, dict):
                    fresh = role.fresh_query()
                    if set(probe.json) <= set(fresh):  # a body made of the role's credential fields
                        probe.json = {name: fresh[name] for name in probe.json}
        return probe

    def _routes(self, endpoint: Endpoint, args: dict[str, Value]) -> bool:
        built = endpoint.rule.build({k: str(v) for k, v in args.items()}, append_unknown=False)
        return bool(built) and endpoint.routes(self.surface.adapter, built[1])

    def _private(self, sighting: Any) -> bool:
        values = {v for _, v in sighting.args} | {v for _, v in sighting.query}
        return bool(values & self.private)

    # ------------------------------------------------------------------ sending

    def send(self, endpoint: Endpoint, role: Role, probe: Probe) -> bool:
        """Send ``probe``; record a finding for a 5xx or a traceback. True when the role was
        turned away before the view (the walk then spares its fields)."""
        template = endpoint.template(self.surface.adapter)
        assert template is not None, f"{endpoint.key}: no path value routes here"
        path, sentinels = template
        for name, sentinel in sentinels.items():
            path = path.replace(sentinel, path_segment(probe.args[name]), 1)
        url = path + (f"?{encode(probe.query)}" if probe.query else "")
        data, content_type = self._body(endpoint, role, probe)
        self.sent += 1
        environ = {"REMOTE_ADDR": f"10.{(self.sent >> 16) & 255}.{(self.sent >> 8) & 255}.{self.sent & 255}"}
        before = len(self.catcher.records)
        try:
            response = role.client.open(url, method=endpoint.method, data=data, content_type=content_type,
                                        headers=probe.headers, environ_base=environ)  # fmt: skip
            response.get_data()
            response.close()
            status = response.status_code
            # Turned away: asked for credentials (401 with a challenge), forbidden, or sent to
            # the sign-in page with a way back (next=). A wrong password's 401 is an answer.
            location = urlsplit(response.location or "")
            refused = (
                (status == 401 and "WWW-Authenticate" in response.headers)
                or status == 403
                or (300 <= status < 400 and location.path in self.login_paths and "next=" in location.query)
            )
        except Exception as exc:  # noqa: BLE001 - whatever escapes the app is a finding
            self.findings.append(Finding(endpoint.key, role.name, probe.note, 500, f"raised {exc!r}"[:300]))
            return False
        self.statuses[status] += 1
        self.by_endpoint[endpoint.key][status] += 1
        if status < 400 and not refused:
            self.passed[endpoint.key].add(role.name)
        records = self.catcher.records[before:]
        if status >= 500 or records:
            detail = "; ".join(_describe(r) for r in records) or ""
            self.findings.append(Finding(endpoint.key, role.name, probe.note + f" [{url[:120]}]", status, detail))
        return refused

    def _body(self, endpoint: Endpoint, role: Role, probe: Probe) -> tuple[bytes | None, str | None]:
        if probe.body is not None:
            return probe.body, probe.content_type
        if probe.json is not NO_BODY:
            return json.dumps(probe.json).encode(), probe.content_type or "application/json"
        if probe.form is None:
            return None, probe.content_type
        form = list(probe.form)
        for name, attrs in endpoint.widgets.items():
            solver = self.solvers.get(attrs.get("tag", ""))
            if solver and (name, "") in form:
                form[form.index((name, ""))] = (name, solver(role, attrs))
        return encode(form).encode(), probe.content_type or "application/x-www-form-urlencoded"

    # ------------------------------------------------------------------ the walk

    def walk(self, endpoint: Endpoint, role: Role) -> None:
        """Baseline, systematic corpus, structural abuse and random examples for one pair.

        Each probe starts from a new baseline: the values seen rotate, and the sender's body
        requests get an unused link each (a used one shows the status instead of the form)."""
        base = self.baseline(endpoint, role, 0)
        if base is None:
            self.findings.append(Finding(endpoint.key, role.name, "no path value routes to this rule", 0, ""))
            return
        refused = self.send(endpoint, role, base)
        inputs = slots(endpoint, base)
        cheap = endpoint.method in ("HEAD", "OPTIONS")
        counter = iter(range(1, 1_000_000))

        def fresh() -> Probe:
            probe = self.baseline(endpoint, role, next(counter))
            assert probe is not None
            return probe

        chosen = [slot for slot in inputs if self._systematic_here(endpoint, role, slot, refused or cheap)]
        for probe in systematic(fresh, chosen, endpoint.json_headers):
            self.send(endpoint, role, probe)
        for probe in structural(endpoint.method, fresh, inputs):
            if not cheap or probe.note in ("reserved query, all", "oversized form body"):
                self.send(endpoint, role, probe)
        self.random(endpoint, role, fresh, inputs, self.random_examples // (2 if cheap or refused else 1))

    def _systematic_here(self, endpoint: Endpoint, role: Role, slot: Slot, spare: bool) -> bool:
        """Whether this slot gets the whole corpus here. Path values always do. Other inputs
        are spared when the role was turned away (or the method runs no view of its own:
        HEAD, OPTIONS), and a query name most endpoints read (the language) gets it once per
        blueprint and role; random examples still reach all of them everywhere."""
        where, name, _ = slot
        if where == "path":
            return True
        if spare:
            return False
        if where == "query" and name in self._common_query():
            key = (endpoint.rule.endpoint.partition(".")[0], role.name, name)
            if key in self._common_done:
                return False
            self._common_done.add(key)
        return True

    def _common_query(self) -> set[str]:
        if self._common is None:
            counts = Counter(name for e in self.surface.endpoints.values() for name in e.query)
            self._common = {name for name, n in counts.items() if n > len(self.surface.endpoints) / 2}
        return self._common

    def random(self, endpoint: Endpoint, role: Role, fresh: Callable[[], Probe], inputs: list[Slot], n: int) -> None:
        """``n`` random examples: one to three slots (or a new name) set to generated values."""
        if n <= 0:
            return
        choices = [*inputs, ("extra", "", "")]
        places = ["query", "form"] if endpoint.method in BODY_METHODS else ["query"]

        @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(st.data())
        def run(data: st.DataObject) -> None:
            probe = fresh()
            notes = []
            for where, name, valid in data.draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3)):
                if where == "extra":
                    where, name = data.draw(st.sampled_from(places)), data.draw(any_text.filter(bool))
                if where == "json":
                    value: Any = data.draw(json_values)
                else:
                    hostile: Hostile = data.draw(wire_values)
                    value = apply(hostile, valid if isinstance(valid, bytes) else str(valid))
                probe = probe.with_value(where, name, value, "")
                notes.append(f"{where} {name!r}={value!r}"[:120])
            self.send(endpoint, role, replace(probe, note="random: " + ", ".join(notes)))

        run()

    def run(self, step: Callable[[Endpoint, Role], None] | None = None, *, quiet: tuple[str, ...] = ()) -> float:
        """Run ``step`` (default: :meth:`walk`) for every endpoint as every role; returns the
        seconds it took. Records of the ``quiet`` loggers (one line per request) are still
        made and formatted, but go to the guard only, not to the test's output."""
        step = step or self.walk
        root, quieted = logging.getLogger(), [logging.getLogger(name) for name in quiet]
        root.addHandler(self.catcher)
        for logger in quieted:
            logger.propagate = False
            logger.addHandler(self.catcher)
        started, cpu = time.perf_counter(), time.process_time()
        try:
            for endpoint in self.surface.endpoints.values():
                for role in self.roles:
                    if role.ensure is not None:
                        role.ensure(role)
                    step(endpoint, role)
        finally:
            root.removeHandler(self.catcher)
            for logger in quieted:
                logger.propagate = True
                logger.removeHandler(self.catcher)
            self.cpu_seconds = time.process_time() - cpu
        return time.perf_counter() - started

    def send_baseline(self, endpoint: Endpoint, role: Role) -> None:
        """One valid request (to learn the names the view reads)."""
        base = self.baseline(endpoint, role, 0)
        if base is not None:
            self.send(endpoint, role, base)


def _describe(record: logging.LogRecord) -> str:
    if record.exc_info and record.exc_info[0]:
        return f"{record.name}: {record.getMessage()[:120]}: {record.exc_info[0].__name__}: {record.exc_info[1]}"[:400]
    return f"{record.name}: {record.levelname}: {record.getMessage()[:200]}"
