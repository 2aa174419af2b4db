"""Markup rewritten before nh3 parses it, so that parsing costs time in step with its size.

nh3's parser (html5ever) follows the HTML standard, and the standard does quadratic work on
markup a sender can write: every block start tag searches the stack of open elements (100,000
nested ``<div>`` take minutes), and formatting elements (``<b>``, ``<font>``, ...) left open are
re-created at every later run of text, so a 66 KB body grew to 116 MB in five seconds. nh3 is
one native call the preview's deadline cannot interrupt, so the cure comes before it: the
markup is tokenised here, with regular expressions that never backtrack far and with the
deadline checked as it goes, and written out again as a stream html5ever reads as written:

- only the elements nh3 keeps, each closed in order, none nested deeper than a cap (a deeper
  start tag is dropped and its content kept); start tags close what the standard says they
  close (a ``<p>`` the paragraph before it, a ``<td>`` the cell before it), so sloppy markup
  keeps its shape;
- formatting elements renamed (``b`` to ``sfr-b``): html5ever treats them as plain elements,
  and :func:`restore` names them back in nh3's output;
- none of the markup's comments, declarations, scripts, styles or other raw-text content;
- character references resolved here, by the standard's rules for text and for attribute
  values, and every "&", "<" and '"' written escaped, so no token written here can join the
  next into a tag;
- text cut into runs of :data:`TEXT_RUN` characters by empty comments (nh3 drops them, and
  the text reads as before): html5ever's serialiser copies a whole text node for each "&"
  or no-break space it escapes, so a megabyte of "&" took ten seconds; kept attribute
  values (not links, which nh3 replaces) are cut to :data:`ATTRIBUTE_LIMIT` for the same
  reason.

Nothing here is a security boundary: nh3 still sanitises whatever this writes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Set
from html.entities import html5 as ENTITIES

from release.preview.limits import Deadline

# The formatting elements of the HTML standard, but "a" (at most one is open per table cell).
FORMATTING = {"b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
# Elements whose content the HTML tokenizer reads as text up to their end tag: dropped whole.
RAW_TEXT = {"script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"}
HEAD_CONTENT = {"base", "basefont", "bgsound", "link", "meta", "title", "style", "script", "noscript", "template"}
SPACE = "\t\n\f\r "
# One token from a "<": a comment, a declaration or processing instruction (read as a comment
# up to the next ">"), an end tag or a start tag with its attributes. Attribute values in
# quotes may hold ">"; a quote left open runs to the end, as in the standard.
TOKEN = re.compile(
    r"<!--(?:-?>|.*?(?:--!?>|\Z))"
    r"|<[!?][^>]*>?"
    r"|</(?P<end>[a-zA-Z][^\t\n\f\r />]*)?(?P<endrest>(?:\"[^\"]*(?:\"|\Z)|'[^']*(?:'|\Z)|[^>\"'])*)(?P<endclose>>)?"
    r"|<(?P<start>[a-zA-Z][^\t\n\f\r />]*)(?P<attrs>(?:[\t\n\f\r /]+|[^\t\n\f\r />][^\t\n\f\r />=]*"
    r"(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"[^\"]*(?:\"|\Z)|'[^']*(?:'|\Z)|[^\t\n\f\r >]*))?)*)(?P<close>>)?",
    re.DOTALL,
)
ATTRIBUTE = re.compile(
    r"([^\t\n\f\r />][^\t\n\f\r />=]*)(?:[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"([^\"]*)\"?|'([^']*)'?|([^\t\n\f\r >]*)))?"
)
OPENING = re.compile(r"<[a-zA-Z!?/]")
REFERENCE = re.compile(r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[a-zA-Z][a-zA-Z0-9]*;?)")
# What a start tag closes first, and which open elements end the search for it.
TABLE_SCOPE = {"table"}
CELL_SCOPE = {"table", "td", "th", "caption"}
BLOCKS = {"address", "blockquote", "center", "dd", "div", "dl", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li"}
BLOCKS |= {"ol", "p", "pre", "table", "ul"}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
LIST_STOPS = {"blockquote", "center", "dl", "ol", "ul", "table", "td", "th", "caption", "pre"} | HEADINGS
SECTIONS = {"tbody", "thead", "tfoot"}
TABLE_PARTS = {"caption", "colgroup", "tr", "td", "th"} | SECTIONS
# Content whose current element is one of these is moved before the table ("foster
# parenting"), which costs html5ever a search of the table's siblings each time.
TABLE_CONTEXT = {"table", "tbody", "thead", "tfoot", "tr"}
FOSTER_LIMIT = 4096  # characters and tags
TEXT_RUN = 1024
ATTRIBUTE_LIMIT = 16 * 1024
IMPLIES_END = BLOCKS | HEADINGS | SECTIONS | {"a", "td", "th", "tr"}
CHECK_EVERY = 256


def balance(
    markup: str,
    tags: Set[str],
    attributes: Mapping[str, Set[str]],
    dropped: Set[str],
    max_depth: int,
    deadline: Deadline,
) -> str:
    """``markup`` as a balanced stream of the elements in ``tags`` (attributes as allowed by
    ``attributes``, "*" for every element); ``dropped`` elements go with their content."""
    writer = _Writer(tags, attributes, dropped | RAW_TEXT, max_depth)
    position, end = 0, len(markup)
    tokens = 0
    while position < end:
        found = OPENING.search(markup, position)
        start = found.start() if found else end
        if start > position:
            writer.text(markup[position:start])
        if not found:
            break
        match = TOKEN.match(markup, start)
        if match is None:  # defensive: each alternative matches whatever follows its opening
            writer.text("<")
            position = start + 1
            continue
        position = match.end()
        name = match.group("start")
        if name is not None:
            if match.group("close") is None:
                break  # a tag cut off by the end of the markup is no tag
            name = name.lower()
            writer.start(name, match.group("attrs"))
            if name in RAW_TEXT:
                position = _raw_text_end(markup, position, name)
        elif match.group("end") is not None and match.group("endclose") is not None:
            writer.end(match.group("end").lower())
        tokens += 1
        if tokens % CHECK_EVERY == 0:
            deadline.check()
    return writer.finish()


def restore(clean: str) -> str:
    """nh3's output with the formatting elements named back. Every "<" in its text and
    attribute values is escaped, and it holds no element named "sfr-..." but those renamed
    here (:func:`balance` unwraps a sender's own), so every "<sfr-" is one of ours."""
    return clean.replace("<sfr-", "<").replace("</sfr-", "</")


def _raw_text_end(markup: str, position: int, name: str) -> int:
    """Where the raw text of element ``name`` starting at ``position`` ends, its end tag included."""
    if name == "plaintext":
        return len(markup)
    closing = re.compile(rf"</{name}(?=[\t\n\f\r />])[^>]*>?", re.IGNORECASE)
    found = closing.search(markup, position)
    return found.end() if found else len(markup)


class _Writer:
    """The open elements, and the balanced stream written so far."""

    def __init__(self, tags: Set[str], attributes: Mapping[str, Set[str]], dropped: Set[str], max_depth: int):
        self.tags = tags
        self.allowed = {tag: attributes.get(tag, set()) | attributes.get("*", set()) for tag in tags}
        self.dropped = dropped
        self.max_depth = max_depth
        self.out: list[str] = []
        self.open: list[str] = []
        self.counts: dict[str, int] = {}
        # The outermost dropped element the tokens are inside of, and how many elements of its
        # name are open in it (a count, not a stack: ten thousand nested <math> cost nothing).
        self.skipping = ""
        self.skip_depth = 0
        self.fostered = 0
        self.run = 0  # characters of text since the last comment

    def text(self, data: str) -> None:
        if self.skipping == "head" and data.strip(SPACE):
            self.skipping = ""  # text ends a head left open, as in the standard
        if self.skipping or (data.strip(SPACE) and self._foster_spent(len(data))):
            return
        if "&" in data:
            data = html.unescape(data)
        position = 0
        while position < len(data):
            if self.run >= TEXT_RUN:
                self.out.append("<!---->")
                self.run = 0
            piece = data[position : position + TEXT_RUN - self.run]
            self.out.append(piece.replace("&", "&amp;").replace("<", "&lt;"))
            position += len(piece)
            self.run += len(piece)

    def start(self, name: str, attrs: str) -> None:
        if self.skipping == "head" and name not in HEAD_CONTENT:
            self.skipping = ""
        if self.skipping:
            self.skip_depth += name == self.skipping
            return
        if name in self.dropped:
            if name not in VOID and name not in RAW_TEXT:
                self.skipping, self.skip_depth = name, 1
            return
        if name not in self.tags or (name not in TABLE_PARTS and name != "col" and self._foster_spent(1)):
            return  # unwrapped: its content stays where it is
        if name in IMPLIES_END:
            self._implied_end(name)
        if name not in VOID and len(self.open) >= self.max_depth:
            return
        self.out.append(f"<{renamed(name)}{self._attributes(name, attrs)}>")
        if name not in VOID:
            self.open.append(name)
            self.counts[name] = self.counts.get(name, 0) + 1

    def end(self, name: str) -> None:
        if self.skipping:
            self.skip_depth -= name == self.skipping
            if not self.skip_depth:
                self.skipping = ""
            return
        if self.open and self.open[-1] == name:
            self._close_from(len(self.open) - 1)
        elif name == "br" and "br" in self.tags:
            self.out.append("<br>")  # the standard reads </br> as <br>
        elif name == "table":
            self._close({name}, set())
        else:
            self._close({name}, TABLE_SCOPE if name in TABLE_PARTS else CELL_SCOPE)

    def finish(self) -> str:
        self._close_from(0)
        return "".join(self.out)

    def _foster_spent(self, cost: int) -> bool:
        """Whether the next piece of content would be moved before its table, with the
        :data:`FOSTER_LIMIT` on that spent (such content is dropped: browsers show it above
        the table, where sloppy markup puts little but stray spaces). Text moved there joins
        one text node whatever comments come between, so it counts by its length."""
        if not self.open or self.open[-1] not in TABLE_CONTEXT:
            return False
        self.fostered += cost
        return self.fostered > FOSTER_LIMIT

    def _implied_end(self, name: str) -> None:
        """Close what the standard closes before ``name`` starts."""
        if name in BLOCKS:
            self._close({"p"}, CELL_SCOPE)
        if name == "li":
            self._close({"li"}, LIST_STOPS)
        elif name in ("dd", "dt"):
            self._close({"dd", "dt"}, LIST_STOPS)
        elif name in ("td", "th"):
            self._close({"td", "th"}, TABLE_SCOPE)
        elif name == "tr":
            self._close({"tr"}, TABLE_SCOPE)
        elif name in SECTIONS:
            self._close(SECTIONS, TABLE_SCOPE)
        elif name == "a":
            self._close({"a"}, CELL_SCOPE)
        elif name in HEADINGS and self.open and self.open[-1] in HEADINGS:
            self._close_from(len(self.open) - 1)

    def _close(self, names: Set[str], stops: Set[str]) -> None:
        """Close the innermost open element of ``names`` and all inside it, unless an element
        of ``stops`` comes first."""
        if not any(self.counts.get(n) for n in names):
            return
        for index in range(len(self.open) - 1, -1, -1):
            if self.open[index] in names:
                self._close_from(index)
                return
            if self.open[index] in stops:
                return

    def _close_from(self, index: int) -> None:
        while len(self.open) > index:
            name = self.open.pop()
            self.counts[name] -= 1
            self.out.append(f"</{renamed(name)}>")

    def _attributes(self, name: str, attrs: str) -> str:
        allowed = self.allowed[name]
        if not attrs.strip(SPACE + "/"):
            return ""
        written: dict[str, str] = {}
        for match in ATTRIBUTE.finditer(attrs):
            key = match.group(1).lower()
            if key in allowed and key not in written:  # the first of two wins, as in the standard
                value = _attribute_value(next((v for v in match.group(2, 3, 4) if v is not None), ""))
                if key != "href":
                    value = value[:ATTRIBUTE_LIMIT]
                written[key] = value.replace("&", "&amp;").replace('"', "&quot;")
        return "".join(f' {key}="{value}"' for key, value in written.items())


def _attribute_value(value: str) -> str:
    """``value`` with its character references resolved as the standard does inside an
    attribute: as in text, but a named reference without its ";" stays as written where a
    letter, digit or "=" follows it ("?a=1&copy=2" is a URL, not "?a=1©=2")."""

    def resolve(match: re.Match[str]) -> str:
        reference = match.group(0)
        if reference.startswith("&#"):
            return html.unescape(reference)
        name = reference[1:]
        following = value[match.end() : match.end() + 1]
        return ENTITIES[name] if name in ENTITIES and (name.endswith(";") or following != "=") else reference

    return REFERENCE.sub(resolve, value) if "&" in value else value


def renamed(name: str) -> str:
    """The name a formatting element has on its way through nh3."""
    return f"sfr-{name}" if name in FORMATTING else name
