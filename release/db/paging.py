"""One way to cut a query into pages: a count, a page number clamped into range, one slice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")
PAGE_SIZE = 50


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows, the total that matched, and where this page is."""

    items: list[T]
    total: int
    number: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        """How many pages there are (at least one, even when nothing matched)."""
        return max(1, -(-self.total // self.size))


def paginate(session: Session, query: Select[Any], number: int, size: int = PAGE_SIZE) -> Page[Any]:
    """Page ``number`` of ``query`` (ordered by the caller); a number out of range shows the
    nearest page that exists, so a stale or hand-typed link never errs."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    last = max(1, -(-total // size))
    number = min(max(1, number), last)
    items = session.scalars(query.offset((number - 1) * size).limit(size)).all()
    return Page(list(items), total, number, size)
