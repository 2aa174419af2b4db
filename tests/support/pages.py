"""What a browser finds in a page: the URLs it may request (links, form actions, scripts,
styles and any attribute holding a same-site path, such as a script's ``data-status-url``)
and the forms with their fields as the browser would submit them."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlsplit

# Elements whose name is submitted; a custom element with a name (a CAPTCHA widget) fills a
# field of that name when it has done its work.
FIELD_TAGS = {"input", "textarea", "select", "button"}
UNSUBMITTED_INPUTS = {"file", "image", "reset"}


@dataclass
class Field:
    """One named field; ``values`` holds every value the page offers for it (the buttons of a
    group, the options of a select), the default first."""

    name: str
    values: list[str]
    kind: str  # input type, "textarea", "select", "button", or the tag of a widget


@dataclass
class Form:
    """A form as a browser would submit it."""

    action: str  # absolute path + query, resolved against the page
    method: str
    fields: dict[str, Field] = field(default_factory=dict)
    widgets: dict[str, dict[str, str]] = field(default_factory=dict)  # field name -> the widget's attributes


def same_site(url: str, hosts: tuple[str, ...]) -> str | None:
    """``url`` as path + query when it points into this site (a path, or a URL on ``hosts``)."""
    parts = urlsplit(url)
    if url.startswith("//") or (parts.netloc and parts.netloc not in hosts) or not parts.path.startswith("/"):
        return None
    if parts.scheme not in ("", "http", "https"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


class Page(HTMLParser):
    """Parses one HTML page served at ``url``."""

    def __init__(self, url: str, html: str, hosts: tuple[str, ...] = ("localhost",)) -> None:
        super().__init__(convert_charrefs=True)
        self.url = url
        self.hosts = hosts
        self.urls: list[str] = []
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._textarea: tuple[str, list[str]] | None = None
        self._select: str | None = None
        self.feed(html)
        self.close()

    def _same_site(self, value: str) -> str | None:
        return same_site(value, self.hosts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        for name, value in values.items():
            if name not in ("action", "value") and (found := self._same_site(value)):
                self.urls.append(found)
        if tag == "form":
            action = self._same_site(values.get("action") or self.url) or self.url
            self._form = Form(action, (values.get("method") or "get").upper())
            self.forms.append(self._form)
            return
        name = values.get("name")
        if self._form is None or not name:
            if tag == "option" and self._select and self._form is not None:
                self._form.fields[self._select].values.append(values.get("value", ""))
            return
        if tag in FIELD_TAGS:
            kind = values.get("type", "text") if tag == "input" else tag
            if kind in UNSUBMITTED_INPUTS or "disabled" in values:
                return
            value = values.get("value", "on" if kind in ("checkbox", "radio") else "")
            if tag == "textarea":
                self._textarea = (name, [])
            if tag == "select":
                self._select = name
                value_list: list[str] = []
            else:
                value_list = [value]
            known = self._form.fields.get(name)
            if known is None:
                self._form.fields[name] = Field(name, value_list, kind)
            else:
                known.values.extend(value_list)
        else:  # a widget (custom element) that will fill the field ``name``
            self._form.widgets[name] = {**values, "tag": tag}
            self._form.fields[name] = Field(name, [""], tag)

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "textarea" and self._textarea is not None and self._form is not None:
            name, text = self._textarea
            self._form.fields[name].values = ["".join(text)]
            self._textarea = None
        elif tag == "select":
            self._select = None
