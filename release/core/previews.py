"""Previews of held messages for the people allowed to see them (the release link's holder,
and admins, audited by the web layer): where the bytes come from, and what the page says
when there are none.

Bytes: an rspamd node's copy is the service's own (stored.py); a Halon 5 node's is read once
through its API and kept here, compressed, while the message has a live copy; Halon 6 has
no content API (the page says so). No transaction stays open while a gateway is asked: an
rspamd node's "gateway" is this same database, and SQLite would wait on itself.
"""

from __future__ import annotations

import enum
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from release.config import Settings
from release.db.models import PreviewContent, Recipient, Report
from release.db.states import LIVE_RECIPIENT_STATES
from release.gateway import ContentUnavailable, Gateway, GatewayError, MessageContent
from release.preview import Attachment, Limits, Preview, build_preview
from release.preview.build import attachment_data
from release.preview.links import warm_up

log = logging.getLogger(__name__)


class Unavailable(enum.StrEnum):
    """Why a page shows no preview, in words the template turns into a sentence."""

    OFF = "off"  # switched off, for the service or for the node
    NOT_SUPPORTED = "not_supported"  # the gateway cannot hand out content (halon6)
    GONE = "gone"  # the copy is no longer on the gateway
    OUTAGE = "outage"  # the gateway could not be asked just now


@dataclass(frozen=True)
class Shown:
    """A preview, or why there is none."""

    preview: Preview | None = None
    unavailable: Unavailable | None = None


@dataclass(frozen=True)
class _Copy:
    node: str
    message_id: str
    queue: int


class Previews:
    """Loads and builds previews for recipients' copies."""

    def __init__(self, settings: Settings, gateways: Mapping[str, Gateway]) -> None:
        self.settings = settings
        self.gateways = gateways
        preview = settings.preview
        self.limits = Limits(max_bytes=preview.max_bytes, seconds=preview.parse_seconds)
        if preview.enabled:
            warm_up()  # the suffix list takes most of a second to load: not in a page view

    def show(self, session: Session, recipient: Recipient) -> Shown:
        """The preview of ``recipient``'s copy; ends the session's transaction."""
        loaded = self._content(session, recipient)
        if not isinstance(loaded, MessageContent):
            return Shown(unavailable=loaded)
        return Shown(build_preview(loaded.data, loaded.size, self.limits, symbols=loaded.verdicts))

    def attachment(self, session: Session, recipient: Recipient, index: int) -> tuple[Attachment, bytes] | None:
        """One attachment's listing and bytes, as :meth:`show` lists it; None when there is none."""
        loaded = self._content(session, recipient)
        if not isinstance(loaded, MessageContent):
            return None
        return attachment_data(loaded.data, loaded.size, self.limits, index)

    def _content(self, session: Session, recipient: Recipient) -> MessageContent | Unavailable:
        copy = _Copy(recipient.report.node, recipient.report.message_id, recipient.queue)
        node = self.settings.node(copy.node)
        gateway = self.gateways.get(copy.node)
        if node is None or gateway is None or not (self.settings.preview.enabled and node.preview):
            session.rollback()
            return Unavailable.OFF
        cached = _cached(session, copy) if node.type != "rspamd" else None
        session.rollback()  # nothing written; no transaction held while the gateway works
        if cached is not None:
            return cached
        try:
            content = gateway.content(copy.message_id, copy.queue, self.limits.max_bytes)
        except ContentUnavailable:
            return Unavailable.NOT_SUPPORTED
        except GatewayError as exc:
            log.warning("preview of %s/%s: the gateway could not be asked: %s", copy.node, copy.message_id, exc)
            return Unavailable.OUTAGE
        if content is None:
            return Unavailable.GONE
        if node.type != "rspamd":
            _keep(session, copy, content)
        return content


def _cached(session: Session, copy: _Copy) -> MessageContent | None:
    """What was kept, read in one statement (a purge between two would leave half a row)."""
    row = session.execute(
        select(PreviewContent.content, PreviewContent.size).where(
            PreviewContent.node == copy.node, PreviewContent.message_id == copy.message_id
        )
    ).first()
    return MessageContent(zlib.decompress(row.content), row.size) if row is not None else None


def _keep(session: Session, copy: _Copy, content: MessageContent) -> None:
    """Keep what the node gave for the next view; a view racing this one may have kept it."""
    session.add(
        PreviewContent(
            node=copy.node, message_id=copy.message_id, size=content.size, content=zlib.compress(content.data)
        )
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()


def purge_contents(session: Session, horizon: datetime, dry_run: bool = False) -> int:
    """Drop kept contents whose message has no live copy left, or read before ``horizon``
    (the longest a copy can be held); returns how many (or would)."""
    live = (
        select(Recipient.id)
        .join(Report)
        .where(
            Report.node == PreviewContent.node,
            Report.message_id == PreviewContent.message_id,
            Recipient.state.in_(LIVE_RECIPIENT_STATES),
        )
    )
    stale = ~live.exists() | (PreviewContent.fetched_at < horizon)
    if dry_run:
        return session.scalar(select(func.count()).select_from(PreviewContent).where(stale)) or 0
    deleted = session.execute(delete(PreviewContent).where(stale).execution_options(synchronize_session=False))
    return int(getattr(deleted, "rowcount", 0) or 0)
