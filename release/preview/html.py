"""HTML bodies, sanitised with nh3 (Rust's ammonia): what survives is formatting and text.

No script, style sheet, form, frame, object, SVG or meta element survives, and no attribute
that loads anything: images keep their size and alt text and lose their source (the frame
draws a placeholder), links lose their target. Each link's target is recorded first, so the
page can list where it really went and the frame can name its domain beside the text.
"""

from __future__ import annotations

import html
import re

import nh3

from release.preview.balance import balance, renamed, restore
from release.preview.limits import Deadline
from release.preview.links import link
from release.preview.model import Link

TAGS = {
    *("a", "abbr", "b", "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup", "dd", "del"),
    *("div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li"),
    *("mark", "ol", "p", "pre", "q", "s", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody"),
    *("td", "tfoot", "th", "thead", "tr", "tt", "u", "ul"),
}
# Elements dropped with everything inside them (the rest of an unknown element's text stays).
DROPPED_WITH_CONTENT = {"script", "style", "head", "title", "template", "noscript", "svg", "math", "object"}
LAYOUT = {"align", "valign", "width", "height", "colspan", "rowspan", "border", "cellpadding", "cellspacing", "dir"}
ATTRIBUTES = {
    "*": {"style", "align", "dir", "lang"},
    "a": {"href"},  # rewritten to a numbered placeholder, then replaced (see _mark)
    "img": {"alt", "width", "height"},
    "font": {"color", "size"},
    "table": LAYOUT,
    "td": LAYOUT,
    "th": LAYOUT,
    "tr": LAYOUT,
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
    "li": {"value"},
}
# Style properties that change looks only: none can load a resource, hide text or move it.
STYLE_PROPERTIES = {
    *("color", "background-color", "font-family", "font-size", "font-style", "font-weight", "line-height"),
    *("text-align", "text-decoration", "text-transform", "vertical-align", "white-space", "letter-spacing"),
    *("width", "max-width", "min-width", "height", "padding", "padding-top", "padding-right", "padding-bottom"),
    *("padding-left", "margin", "margin-top", "margin-right", "margin-bottom", "margin-left", "border"),
    *("border-top", "border-right", "border-bottom", "border-left", "border-color", "border-style"),
    *("border-width", "border-collapse", "border-spacing", "border-radius"),
}
# The only functions a style may call: colours and calc(). Any other (url(), image-set(),
# expression(), one a CSS escape spells) loses the element its whole style attribute,
# whatever property it sits in: nh3 keeps a property's value as it is, and a url() in it is
# a request. Matched possessively, from the start of a name only, so a long run of name
# characters costs one pass (a plain "([\w-]*)\s*\(" took seconds on 20,000).
ALLOWED_CALL = re.compile(r"(?<![\w-])(?:rgba?|hsla?|calc)\s*+\(", re.IGNORECASE)
# Schemes whose links are recorded (and shown as dangerous where they are); a link with any
# other scheme loses its target without being listed.
SCHEMES = {
    "http",
    "https",
    "mailto",
    "ftp",
    "tel",
    "sms",
    "javascript",
    "vbscript",
    "data",
    "file",
    "blob",
    "cid",
    # Windows protocol handlers that run code when opened (Follina and its kin).
    "ms-msdt",
    "search-ms",
    "search",
    "ms-officecmd",
    "ms-word",
    "ms-excel",
    "ms-powerpoint",
    "ms-settings",
    "ms-appinstaller",
    "ms-cxh",
    "ms-cxh-full",
    "mk",
    "its",
    "jar",
    "smb",
}
# A sanitised anchor, exactly as nh3 serialises it: the placeholder is its only attribute,
# and anchors never nest (the HTML parser closes one before the next), so its content ends at
# the first "</a>" (a "<" in text is serialised as "&lt;").
PLACEHOLDER = re.compile(r'<a href="#sfr-link-(\d+)">')
# An anchor's content stops short of another anchor: one nested through a table cell is read
# as its own.
ANCHOR = re.compile(r'<a href="#sfr-link-(\d+)">((?:(?!<a[ >]).)*?)</a>', re.DOTALL)
# Links whose targets are checked and marked in the frame; beyond, a link shows no domain.
LINKS_CHECKED = 2000
IMAGE = re.compile(r"<img\b[^>]*>")
ALT = re.compile(r'\salt="([^"]*)"')
TAG = re.compile(r"</?([a-z0-9]+)[^>]*>")
# Tags that break a line; any other (b, span, font...) joins the text on either side, as the
# eye reads it: "www.<b>bank</b>.example" names www.bank.example.
BLOCK = {"br", "p", "div", "li", "td", "th", "tr", "table", "blockquote", "pre", "hr", "dd", "dt", "h1", "h2", "h3"}
TEXT_SCAN = 32_000  # of an anchor's markup: empty tags cannot push the words it shows out of sight


def sanitise(markup: str, deadline: Deadline, max_links: int, max_depth: int) -> tuple[str, list[Link]]:
    """The safe markup of ``markup`` and its links (first ``max_links``), in order; elements
    nested deeper than ``max_depth`` lose their tags (balance.py says why)."""
    targets: list[str] = []

    def record(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "style":
            return value if _plain_style(value) else None  # url(), expression(), escapes: all gone
        if tag != "a":
            return value
        if attribute != "href":
            return None  # an anchor keeps only its placeholder: see PLACEHOLDER
        targets.append(value)
        return f"#sfr-link-{len(targets) - 1}"

    deadline.check()
    balanced = balance(markup, TAGS, ATTRIBUTES, DROPPED_WITH_CONTENT, max_depth, deadline)
    deadline.check()
    clean = nh3.clean(
        balanced,
        tags={renamed(t) for t in TAGS},
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes={renamed(t): names for t, names in ATTRIBUTES.items()},
        attribute_filter=record,
        url_schemes=SCHEMES,
        strip_comments=True,
        link_rel=None,
        filter_style_properties=STYLE_PROPERTIES,
    )
    clean = restore(clean)
    deadline.check()
    texts = _link_texts(clean, LINKS_CHECKED, deadline) if targets else {}
    checked = [link(target, texts.get(i, "")) for i, target in enumerate(targets[:LINKS_CHECKED])]
    deadline.check()
    return _mark(clean, checked), _listed(checked, max_links)


def _listed(checked: list[Link], max_links: int) -> list[Link]:
    """The links the page lists, in order: every one that earns a warning first, then the
    rest up to ``max_links``, so that harmless links in front cannot push a phish's off it."""
    risky = [i for i, found in enumerate(checked) if found.mismatch or found.dangerous or found.international]
    chosen = set(risky[:max_links])
    for i in range(len(checked)):
        if len(chosen) >= max_links:
            break
        chosen.add(i)
    return [checked[i] for i in sorted(chosen)]


def _link_texts(clean: str, wanted: int, deadline: Deadline) -> dict[int, str]:
    """The visible text of each of the first ``wanted`` links; a body of a hundred thousand
    links is read only as far as the links the preview lists."""
    texts: dict[int, str] = {}
    for found in ANCHOR.finditer(clean):
        index = int(found.group(1))
        if index >= wanted:
            break
        texts[index] = _visible(found.group(2))
        if index % 64 == 63:
            deadline.check()
    return texts


def _visible(inner: str) -> str:
    """The text a reader sees of an anchor's serialised content (an image counts by its alt)."""
    inner = IMAGE.sub(lambda m: f" {_alt(m.group(0))} ", inner[:TEXT_SCAN])
    inner = TAG.sub(lambda m: " " if m.group(1) in BLOCK else "", inner)
    return " ".join(html.unescape(inner).split())


def _alt(image: str) -> str:
    found = ALT.search(image)
    return found.group(1) if found and found.group(1) else "[image]"


def _plain_style(value: str) -> bool:
    """Whether a style attribute calls no function but colours or calc() and has no CSS escape:
    every "(" opens one of those."""
    return "\\" not in value and value.count("(") == len(ALLOWED_CALL.findall(value))


def _mark(clean: str, links: list[Link]) -> str:
    """Every placeholder link becomes an inert anchor that names its real domain."""

    def replace(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if index >= len(links):
            return '<a class="sfr-link">'
        found = links[index]
        where = found.domain or found.scheme + ":"
        classes = "sfr-link sfr-mismatch" if found.mismatch or found.dangerous else "sfr-link"
        return f'<a class="{classes}" title="{html.escape(found.url)}" data-to="{html.escape(where)}">'

    return PLACEHOLDER.sub(replace, clean)


def frame_document(body: str, title: str) -> str:
    """The whole document the sandboxed frame shows around sanitised ``body``."""
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{FRAME_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


FRAME_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:.75rem;color:#212529;background:#fff;overflow-wrap:anywhere}"
    "img{display:inline-block;border:1px dashed #6c757d;min-width:1.5em;min-height:1em;color:#495057;"
    "font-size:.85em}"
    "a.sfr-link{color:#0a58ca;text-decoration:underline dotted;cursor:default}"
    # The real domain stays readable whatever the sender's styles around it: sized, spaced and
    # coloured here (!important beats the mail's inline styles), and nothing in a link can
    # pull or squeeze text over it.
    "a.sfr-link,a.sfr-link *{margin:0!important;letter-spacing:normal!important;word-spacing:normal!important}"
    'a.sfr-link::after{content:" [" attr(data-to) "]";font:normal 13px/1.3 system-ui,sans-serif!important;'
    "color:#495057!important;background:#fff!important;letter-spacing:normal!important;"
    "word-spacing:normal!important;margin:0!important;padding:0 2px!important;visibility:visible!important;"
    "text-decoration:none!important;white-space:nowrap}"
    "a.sfr-mismatch::after{color:#b02a37!important;font-weight:bold!important}"
    "table{max-width:100%}"
)
