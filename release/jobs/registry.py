"""Every kind of job the worker runs, in one table: adding a kind is one :class:`JobType`
entry (in release.container) plus a ``JobKind`` member and the migration that allows it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.orm import Session

from release.db.states import JobKind

# Runs one job; raises RetryLater, Deferred or PermanentFailure when it did not finish.
Handler = Callable[[Session, int], None]
# Runs many jobs of one kind together and commits its own work; returns, per ref id, why that
# one did not finish (absent: done). One failure never holds back the others.
BatchHandler = Callable[[Session, Sequence[int]], Mapping[int, Exception]]
# What the row shows once its job gave up: (session, ref_id, error).
DeadHandler = Callable[[Session, int, str], None]


class Target(StrEnum):
    """What a job's ``ref_id`` points at."""

    REPORT = "report"
    COPY = "copy"
    NOTHING = "nothing"


@dataclass(frozen=True)
class JobType:
    """Everything the service knows about one kind of job."""

    kind: JobKind
    run: Handler
    on_dead: DeadHandler | None  # None: nothing to show beyond the dead job itself
    label: str  # what admins read in the console
    target: Target
    # Under a backlog, lower runs first: finish what is started before starting more.
    priority: int = 2
    run_many: BatchHandler | None = None
    # (the state on_dead leaves the row in, the state a retried job expects to find)
    retry_from: tuple[str, str] | None = None


class JobRegistry(Mapping[str, JobType]):
    """The job types by kind; refuses a kind twice and a kind the schema does not allow."""

    def __init__(self, types: Iterable[JobType]) -> None:
        self._types: dict[str, JobType] = {}
        for job_type in types:
            if job_type.kind in self._types:
                raise ValueError(f"job kind {job_type.kind!r} registered twice")
            self._types[JobKind(job_type.kind)] = job_type

    def __getitem__(self, kind: str) -> JobType:
        return self._types[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def priorities(self) -> dict[str, int]:
        """Claim order by kind, for kinds that go ahead of the default."""
        return {kind: t.priority for kind, t in self._types.items()}

    def targeting(self, target: Target) -> tuple[str, ...]:
        """The kinds whose ``ref_id`` is a row of ``target``."""
        return tuple(kind for kind, t in self._types.items() if t.target == target)

    def label(self, kind: str) -> str:
        """What admins read for a kind (the kind itself for one no longer registered)."""
        job_type = self._types.get(kind)
        return job_type.label if job_type else kind
