"""A held message, shown so that a recipient can judge it without any risk: the headers that
matter, the gateway's authentication verdicts, the text, sanitised HTML, every link's real
domain and the attachments' true types. Pure functions of the bytes: no Flask, no database,
no gateway; every step is bounded in size and time (limits.py)."""

from release.preview.build import build_preview
from release.preview.limits import Limits
from release.preview.model import Attachment, AuthResult, Link, Preview, Problem

__all__ = ["Attachment", "AuthResult", "Limits", "Link", "Preview", "Problem", "build_preview"]
