"""The attack surface, found rather than listed: every (rule, method) of the app's URL map,
with the path values, query parameters, form fields, JSON fields, request headers and raw
bodies it takes.

Three sources, so that a new route or field is covered without editing the guard:
- a crawl as each role, like a browser: links, forms (their fields and their widgets) and any
  attribute holding a same-site path; GET only (GET never changes state, a tested rule); a
  start URL no GET reaches (a machine client's configured endpoint) is noted, not requested;
- the OpenAPI documents (query and header parameters, JSON bodies, raw bodies of other media
  types, with the documents' examples);
- the names views actually read from ``request.args`` and ``request.form``, recorded while the
  guard runs (:class:`FieldReads`).
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from flask import Flask, request
from flask.testing import FlaskClient
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect, Rule

from tests.support.pages import Field, Page, same_site

PAGES_PER_ENDPOINT = 6  # a crawl visits a few pages of each kind, not every report
PAGES_PER_ROLE = 120
SENTINEL = 7357000  # path values made of digits pass every converter that takes text or numbers
BODY_METHODS = frozenset({"DELETE", "PATCH", "POST", "PUT"})
# Header parameters OpenAPI says to ignore (the media types and the security scheme say them).
IGNORED_HEADERS = {"accept", "content-type", "authorization"}


@dataclass
class Role:
    """Who sends the requests: a client with its cookies, extra headers, where its crawl
    starts, and the values that are its credential (never lent to another role)."""

    name: str
    client: FlaskClient
    start: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    private: set[str] = field(default_factory=set)
    csrf: str = ""
    fresh_query: Callable[[], dict[str, str]] | None = None  # a new unused credential query (sender)
    ensure: Callable[[Role], None] | None = None  # restore the role (signed in again) before a batch


@dataclass(frozen=True)
class Sighting:
    """A URL of this endpoint seen by ``role``: its path values and query."""

    role: str
    args: tuple[tuple[str, str], ...]
    query: tuple[tuple[str, str], ...]


@dataclass
class Endpoint:
    """One method of one rule, and everything known about its inputs."""

    rule: Rule
    method: str
    sightings: list[Sighting] = field(default_factory=list)
    query: set[str] = field(default_factory=set)
    query_defaults: dict[str, str] = field(default_factory=dict)  # for names no URL seen gives a value
    form: dict[str, Field] = field(default_factory=dict)
    widgets: dict[str, dict[str, str]] = field(default_factory=dict)
    json: dict[str, Any] | None = None  # JSON Schema of the body (OpenAPI)
    headers: dict[str, str] = field(default_factory=dict)  # request headers (OpenAPI): name -> valid value
    json_headers: set[str] = field(default_factory=set)  # those whose value is serialized JSON
    raw: tuple[str, bytes] | None = None  # a body of another media type (OpenAPI): the type, a valid body
    _template: tuple[str, dict[str, str]] | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        return f"{self.method} {self.rule.rule}"

    def routes(self, adapter: Any, path: str) -> bool:
        """``path`` reaches this rule with this method (OPTIONS: any rule of the same pattern,
        which answers for all of them)."""
        found = _matches(adapter, path, self.method)
        return found is self.rule or (self.method == "OPTIONS" and found is not None and found.rule == self.rule.rule)

    def default_args(self, adapter: Any) -> dict[str, str] | None:
        """Path values that route to this rule (digits first, then letters), or None."""
        for candidate in ("1", "x"):
            values = dict.fromkeys(self.rule.arguments, candidate)
            built = self.rule.build(values, append_unknown=False)
            if built and self.routes(adapter, built[1]):
                return values
        return None

    def template(self, adapter: Any) -> tuple[str, dict[str, str]] | None:
        """The path with a numeric sentinel in each argument (replaced by the value to send),
        and the sentinels; None when no value routes here."""
        if self._template is None:
            sentinels = {name: str(SENTINEL + i) for i, name in enumerate(sorted(self.rule.arguments))}
            built = self.rule.build(sentinels, append_unknown=False)
            if not built or not self.routes(adapter, built[1]):
                return None
            self._template = (built[1], sentinels)
        return self._template


def _matches(adapter: Any, path: str, method: str) -> Rule | None:
    try:
        rule, _args = adapter.match(unquote(path), method=method, return_rule=True)
    except (HTTPException, RequestRedirect):
        return None
    matched: Rule = rule
    return matched


class FieldReads:
    """Records which query and form names each view reads, by installing a request class
    whose multidicts note every lookup. Nothing about the answer changes."""

    def __init__(self, app: Flask) -> None:
        self.names: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        reads = self

        class Recording(ImmutableMultiDict):  # type: ignore[type-arg]
            def _note(self, key: object) -> None:
                if isinstance(key, str) and request and request.url_rule is not None:
                    where = "query" if request.args is self else "form"
                    reads.names[(request.url_rule.rule, request.method)][where].add(key)

            def __getitem__(self, key: Any) -> Any:
                self._note(key)
                return super().__getitem__(key)

            def get(self, key: Any, default: Any = None, type: Any = None) -> Any:  # noqa: A002 - the signature
                self._note(key)
                return super().get(key, default, type)

            def getlist(self, key: Any, type: Any = None) -> Any:  # noqa: A002
                self._note(key)
                return super().getlist(key, type)

            def __contains__(self, key: object) -> bool:
                self._note(key)
                return super().__contains__(key)

        class RecordingRequest(app.request_class):  # type: ignore[name-defined,misc]
            parameter_storage_class = Recording

        app.request_class = RecordingRequest


class Surface:
    """Every (rule, method) of ``app``, filled in by :meth:`crawl` and :meth:`read_openapi`."""

    def __init__(self, app: Flask, hosts: tuple[str, ...]) -> None:
        self.app = app
        self.hosts = hosts
        self.adapter = app.url_map.bind("localhost")
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        for rule in app.url_map.iter_rules():
            for method in sorted(rule.methods or ()):
                self.endpoints[(rule.rule, method)] = Endpoint(rule, method)
        self.reads = FieldReads(app)
        self.pages_crawled = 0

    def find(self, url: str, method: str) -> tuple[Endpoint, dict[str, Any]] | None:
        """The endpoint a same-site URL reaches with ``method``, and its path values."""
        try:
            rule, args = self.adapter.match(unquote(urlsplit(url).path), method=method, return_rule=True)
        except (HTTPException, RequestRedirect):
            return None
        return self.endpoints[(rule.rule, method)], args

    def _see(self, role: Role, url: str, method: str) -> Endpoint | None:
        found = self.find(url, method)
        if found is None:
            return None
        endpoint, args = found
        query = tuple(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        endpoint.query.update(name for name, _ in query)
        sighting = Sighting(role.name, tuple(sorted((k, str(v)) for k, v in args.items())), query)
        if sighting not in endpoint.sightings:
            endpoint.sightings.append(sighting)
        return endpoint

    def crawl(self, role: Role) -> None:
        """Visit what ``role`` can reach from its start pages, GET only, as a browser would.

        A start URL that no GET reaches is the endpoint a machine client is configured with
        (a node's push URL): its path values are noted for the methods it takes, unsent."""
        for url in role.start:
            if self.find(url, "GET") is None:
                for method in sorted(BODY_METHODS):
                    self._see(role, url, method)
        queue, seen, per_endpoint = deque(role.start), set(), defaultdict(int)
        while queue and len(seen) < PAGES_PER_ROLE:
            url = queue.popleft()
            endpoint = self._see(role, url, "GET")
            if url in seen or endpoint is None or per_endpoint[endpoint.key] >= PAGES_PER_ENDPOINT:
                continue
            seen.add(url)
            per_endpoint[endpoint.key] += 1
            response = role.client.get(url, headers=role.headers)
            self.pages_crawled += 1
            if response.location and (target := same_site(response.location, self.hosts)):
                queue.append(target)
            if response.mimetype != "text/html":
                continue
            page = Page(url, response.get_data(as_text=True), self.hosts)
            queue.extend(page.urls)
            for form in page.forms:
                target = self._see(role, form.action, form.method)
                if target is None:
                    continue
                if form.method == "GET":
                    target.query.update(form.fields)
                    continue
                for name, fld in form.fields.items():
                    known = target.form.setdefault(name, Field(name, [], fld.kind))
                    known.values.extend(v for v in fld.values if v not in known.values)
                target.widgets.update(form.widgets)
                if "csrf_token" in form.fields and not role.csrf:
                    role.csrf = form.fields["csrf_token"].values[0]

    def read_openapi(self, client: FlaskClient, url: str) -> None:
        """Query and header parameters, and bodies, from the OpenAPI document at ``url``: a JSON
        body by its schema, a body of another media type (the first listed) as raw bytes, its
        example (or a placeholder) the valid value."""
        document = client.get(url).get_json()
        prefix = urlsplit(document["servers"][0]["url"]).path.rstrip("/")
        schemas = document.get("components", {}).get("schemas", {})

        def resolve(schema: dict[str, Any]) -> dict[str, Any]:
            ref = schema.get("$ref", "")
            return resolve(schemas[ref.rsplit("/", 1)[-1]]) if ref else schema

        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                params = operation.get("parameters", [])
                sample = path
                for param in params:
                    if param["in"] == "path":
                        sample = sample.replace("{" + param["name"] + "}", "1")
                found = self.find(prefix + sample, method.upper())
                if found is None:
                    raise AssertionError(f"OpenAPI {method.upper()} {path} matches no route")
                endpoint = found[0]
                for param in params:
                    if param["in"] == "query":
                        endpoint.query.add(param["name"])
                        endpoint.query_defaults[param["name"]] = str(json_example(param.get("schema", {})))
                    elif param["in"] == "header" and param["name"].lower() not in IGNORED_HEADERS:
                        endpoint.headers[param["name"]], is_json = header_example(param, resolve)
                        if is_json:
                            endpoint.json_headers.add(param["name"])
                content = operation.get("requestBody", {}).get("content", {})
                if "application/json" in content:
                    endpoint.json = resolve(content["application/json"]["schema"])
                elif content:
                    media_type, media = next(iter(content.items()))
                    example = media.get("example", "guard")
                    endpoint.raw = (media_type, example if isinstance(example, bytes) else str(example).encode())

    def learn(self) -> int:
        """Add the names views were seen reading; returns how many were new."""
        new = 0
        for (rule, method), names in self.reads.names.items():
            endpoint = self.endpoints.get((rule, method))
            if endpoint is None:
                continue
            for name in names["query"] - endpoint.query:
                endpoint.query.add(name)
                endpoint.query_defaults[name] = "guard"  # read by the view, shown nowhere: give it a value
                new += 1
            for name in names["form"] - set(endpoint.form):
                endpoint.form[name] = Field(name, [""], "read")
                new += 1
        return new


def header_example(param: dict[str, Any], resolve: Callable[[dict[str, Any]], dict[str, Any]]) -> tuple[str, bool]:
    """A valid value of an OpenAPI header parameter (its example, else one made from its schema),
    and whether it is serialized JSON (a ``content`` parameter of a JSON media type)."""
    if "content" in param:
        media_type, media = next(iter(param["content"].items()))
        value = media["example"] if "example" in media else json_example(resolve(media.get("schema", {})))
        is_json = media_type == "application/json" or media_type.endswith("+json")
        return (json.dumps(value) if is_json else str(value)), is_json
    schema = resolve(param.get("schema", {}))
    value = param["example"] if "example" in param else json_example(schema)
    return str(value), False


def json_example(schema: dict[str, Any]) -> Any:
    """A small valid instance of a JSON Schema (bounds and enums respected)."""
    if "example" in schema:
        return schema["example"]
    if schema.get("type") == "object":
        return {name: json_example(sub) for name, sub in schema.get("properties", {}).items()}
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "integer":
        return schema.get("minimum", 1)
    if kind == "number":
        return schema.get("minimum", 1.0)
    if kind == "boolean":
        return True
    if kind == "array":
        return [json_example(schema.get("items", {}))] * schema.get("minItems", 0)
    return "guard"
