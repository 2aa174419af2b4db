"""A hostile review of the preview in real Chromium (promise 5 of tests/security/
test_preview_attacks.py): the frame's "[real domain]" marker after each link must stay
readable whatever style the sender's HTML keeps (nh3 lets font-size, margin, letter-spacing,
colours through), and the domain the page says a link "really goes to" must be the one
Chromium would open. A failing test here is a defect found."""

from __future__ import annotations

import html
from typing import Any

import pytest

from tests.support.previews import PreviewSite, mail

pytestmark = pytest.mark.browser

# In the frame (Playwright reaches it through DevTools; the page's scripts cannot): for each
# marked link, the ::after marker's computed style and the background it is drawn on.
MARKER = """() => [...document.querySelectorAll('a.sfr-link')].map(a => {
  const after = getComputedStyle(a, '::after');
  // The marker's own background, if it paints one; else the nearest painted one behind it.
  let el = a, background = after.backgroundColor;
  const painted = b => b !== 'rgba(0, 0, 0, 0)' && b !== 'transparent';
  if (painted(background)) el = null; else background = 'rgb(255, 255, 255)';
  while (el) {
    const b = getComputedStyle(el).backgroundColor;
    if (b !== 'rgba(0, 0, 0, 0)' && b !== 'transparent') { background = b; break; }
    el = el.parentElement;
  }
  return {to: a.dataset.to, content: after.content, fontSize: parseFloat(after.fontSize),
          letterSpacing: after.letterSpacing === 'normal' ? 0 : parseFloat(after.letterSpacing),
          color: after.color, background};
})"""
HIDE_MARKER = """() => { const s = document.createElement('style');
  s.textContent = 'a.sfr-link::after{content:none !important}'; document.head.append(s); }"""

LINK = '<a href="https://evil.example/login">{}</a>'
TEXT = '<span style="font-size:16px;letter-spacing:normal;background-color:#ffffff">Sign in to your account</span>'
HIDING = {
    "control (no trick)": "<p>" + LINK.format("Sign in to your account") + "</p>",
    "font-size 0 around the link": f'<p><span style="font-size:0">{LINK.format(TEXT)}</span></p>',
    "negative margin pushes it off the left edge": "<p>"
    + LINK.format('<span style="margin-right:-60em">Sign in to your account</span>')
    + "</p>",
    "negative letter-spacing collapses it": f'<p><span style="letter-spacing:-1em">{LINK.format(TEXT)}</span></p>',
    "background the marker's own colour": f'<p><span style="background-color:#495057">{LINK.format(TEXT)}</span></p>',
}


def _luminance(rgb: str) -> float:
    channels = [int(part) / 255 for part in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(one: str, two: str) -> float:
    lighter, darker = sorted((_luminance(one), _luminance(two)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@pytest.mark.parametrize("markup", HIDING.values(), ids=HIDING.keys())
def test_the_real_domain_marker_stays_readable(browser: Any, preview_site: PreviewSite, markup: str) -> None:
    """Promise 5 (BREAKS but the control): the link goes to evil.example and its text names
    no domain, so the frame's " [evil.example]" marker (a.sfr-link::after, sized .85em and
    coloured #495057 by FRAME_STYLE) is the recipient's only cue in the message itself.
    An ancestor's font-size:0 (the link text restored inside), a negative margin on the text,
    a negative letter-spacing, or a background of the marker's own colour hide it: the frame
    with the marker and without it are pixel-identical, or the marker is 0 px, smeared or has
    contrast 1:1. Every one of these properties is in STYLE_PROPERTIES."""
    url = preview_site.hold(mail(html=markup, text=None))
    context = browser.new_context(java_script_enabled=False, viewport={"width": 900, "height": 700})
    try:
        page = context.new_page()
        page.goto(url)
        frame_element = page.locator("iframe.preview-frame")
        frame_element.scroll_into_view_if_needed()
        frame = frame_element.element_handle().content_frame()
        assert frame is not None
        frame.wait_for_load_state()
        markers = frame.evaluate(MARKER)
        with_marker = frame_element.screenshot()
        frame.evaluate(HIDE_MARKER)
        without_marker = frame_element.screenshot()
    finally:
        context.close()
    assert [m["to"] for m in markers] == ["evil.example"]
    marker = markers[0]
    problems = []
    if with_marker == without_marker:
        problems.append("the frame looks the same without the marker")
    if marker["fontSize"] < 8:
        problems.append(f"marker font-size {marker['fontSize']} px")
    if marker["letterSpacing"] < -1:
        problems.append(f"marker letter-spacing {marker['letterSpacing']} px")
    if _contrast(marker["color"], marker["background"]) < 3:
        problems.append(f"marker {marker['color']} on {marker['background']}")
    assert not problems, problems


WHERE = {
    "backslash before the userinfo @": "https://evil.example\\@mybank.example/login",
    "no slashes after the scheme": "https:evil.example/login",
    "backslashes after the scheme": "https:\\\\evil.example/login",
}


@pytest.mark.parametrize("href", WHERE.values(), ids=WHERE.keys())
def test_the_domain_shown_is_the_one_chromium_opens(browser: Any, preview_site: PreviewSite, href: str) -> None:
    """Promise 5 (BREAKS): release/preview/links.py reads hosts with urllib's urlsplit;
    browsers and mail clients built on them follow WHATWG URL, where "\\" ends the authority of
    an http(s) URL and the slashes after "https:" are optional. The page's "Really goes to"
    column and the frame's marker name mybank.example or just "https:" for links Chromium opens
    at evil.example."""
    markup = f'<p><a href="{html.escape(href)}">Sign in to your account</a></p>'
    url = preview_site.hold(mail(html=markup, text=None))
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        opens = page.evaluate("(href) => new URL(href).hostname", href)
        shown = page.locator("#preview-links tbody tr td:nth-child(2) strong").all_inner_texts()
    finally:
        context.close()
    assert opens == "evil.example"
    assert shown == ["evil.example"], f"the page says it goes to {shown}; Chromium opens {opens}"
