"""Thin old readings and keep-alives so the tables stop growing with every poll.

Recent readings stay as stored; older ones keep one per minute per station,
and after a month one per quarter hour (see READINGS_* in the settings).
Keep-alive commands that went through go after READINGS_FULL_DAYS.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chargers.gateway.enforcement import KEEP_ALIVE_REQUESTED_BY
from chargers.models import Command, Reading, RetentionProgress, Station

ONE_MINUTE = timedelta(minutes=1)
# Readings are thinned one time slice at a time, all stations together:
# readings written together sit together on disk, so each page is rewritten
# once rather than once per station. A slice holds whole buckets; with polls
# 5 s apart, 200 stations leave 24,000 readings in 10 minutes.
MINUTE_SLICE = timedelta(minutes=10)
COARSE_SLICE = timedelta(hours=1)
# Parameters per DELETE, below the 999 that SQLite 3.31 (the oldest Django
# supports) accepts. One station's slice holds at most 720 readings (one
# hour of polls 5 s apart), so it always fits.
MAX_PARAMS = 900

# station id, reading id, at, state, plug
Row = tuple[int, int, datetime, int | None, int | None]
Status = tuple[int | None, int | None]


@dataclass(frozen=True)
class Policy:
    """What one run keeps: everything from `keep_from`; before it one reading
    per minute, and per `coarse` on days before `coarse_before` (a midnight)."""

    keep_from: datetime
    coarse_before: datetime
    coarse: timedelta

    @classmethod
    def at(cls, now: datetime) -> "Policy":
        return cls(
            keep_from=_floor(now - timedelta(days=settings.READINGS_FULL_DAYS), ONE_MINUTE),
            coarse_before=_midnight(now - timedelta(days=settings.READINGS_MINUTE_DAYS)),
            coarse=timedelta(minutes=settings.READINGS_COARSE_MINUTES),
        )

    def slice_of(self, moment: datetime) -> tuple[datetime, datetime, timedelta]:
        """The slice holding `moment`: its start, its end and its bucket length.

        Buckets and slices start at midnight UTC; the bucket lengths divide an
        hour, so a day holds whole slices and a slice whole buckets.
        """
        day = _midnight(moment)
        if day < self.coarse_before:
            span, bucket = COARSE_SLICE, self.coarse
        else:
            span, bucket = MINUTE_SLICE, ONE_MINUTE
        start = day + (moment - day) // span * span
        return start, min(start + span, self.keep_from), bucket


def thin_readings(now: datetime | None = None) -> int:
    """Delete the readings the retention settings no longer keep; return how many.

    Each run walks only what became old since the last one (RetentionProgress),
    so a year of history costs nothing extra; a run that was stopped resumes.
    """
    policy = Policy.at(now or timezone.now())
    progress, _ = RetentionProgress.objects.get_or_create(pk=1)
    coarse_minutes = int(policy.coarse / ONE_MINUTE)
    if progress.coarse_minutes != coarse_minutes:
        # New settings: what earlier runs kept may not fit them; walk it all once.
        progress.coarse_done_until = progress.minute_done_until = None
        progress.coarse_minutes = coarse_minutes
        progress.save()

    def coarse_done(until: datetime) -> None:
        progress.coarse_done_until = until
        progress.save(update_fields=["coarse_done_until"])

    def minute_done(until: datetime) -> None:
        progress.minute_done_until = until
        progress.save(update_fields=["minute_done_until"])

    deleted = _walk(policy, progress.coarse_done_until, policy.coarse_before, coarse_done)
    minute_from = progress.minute_done_until
    if minute_from is not None:
        minute_from = max(minute_from, policy.coarse_before)
    elif progress.coarse_done_until is not None:
        minute_from = policy.coarse_before
    deleted += _walk(policy, minute_from, policy.keep_from, minute_done)
    return deleted


def forget_keep_alives(now: datetime | None = None) -> int:
    """Delete the keep-alive commands that went through before the last
    READINGS_FULL_DAYS; return how many.

    With a safe fallback armed, the gateway feeds a station's failsafe timer every
    half timeout (30 s by default): a million rows per station-year that say only
    that it was fed. Keep-alives that were refused or failed stay, as every other
    command does."""
    before = (now or timezone.now()) - timedelta(days=settings.READINGS_FULL_DAYS)
    fed = Command.objects.filter(
        requested_by__startswith=KEEP_ALIVE_REQUESTED_BY,
        status__in=(Command.Status.VERIFIED, Command.Status.ACKNOWLEDGED),
        created_at__lt=before,
    )
    deleted = 0
    # In batches: each DELETE holds SQLite's write lock only briefly.
    while batch := list(fed.values_list("pk", flat=True)[:MAX_PARAMS]):
        deleted += Command.objects.filter(pk__in=batch).delete()[0]
    return deleted


def _walk(
    policy: Policy, begin: datetime | None, end: datetime, done: Callable[[datetime], None]
) -> int:
    """Thin the readings in [begin, end), slice by slice, noting progress after each."""
    old = Reading.objects.filter(at__lt=end)
    if begin is not None:
        old = old.filter(at__gte=begin)
    # Per station, the state and plug of the reading kept last: the walk goes
    # forward in time, so this is always the one just before a slice.
    kept = _status_before(begin) if begin is not None else {}
    deleted = 0
    first = old.order_by("at").values_list("at", flat=True).first()
    while first is not None and first < end:
        start, slice_end, bucket = policy.slice_of(first)
        slice_end = min(slice_end, end)
        in_slice = old.filter(at__gte=start, at__lt=slice_end)
        rows: list[Row] = list(
            in_slice.order_by("station_id", "at", "id").values_list(
                "station_id", "id", "at", "state", "plug"
            )
        )
        thinned: list[tuple[int, list[int]]] = []
        for station_id, station_rows in groupby(rows, key=itemgetter(0)):
            group = list(station_rows)
            stay, kept[station_id] = readings_to_keep(group, start, bucket, kept.get(station_id))
            if len(stay) < len(group):
                thinned.append((station_id, stay))
        if thinned:
            deleted += _delete_all_but(in_slice, thinned)
        done(slice_end)
        if rows:
            first = slice_end
        else:
            first = (
                old.filter(at__gte=slice_end).order_by("at").values_list("at", flat=True).first()
            )
    done(end)
    return deleted


def _status_before(moment: datetime) -> dict[int, Status | None]:
    """Each station's state and plug in its latest reading before `moment`."""
    status: dict[int, Status | None] = {}
    for station_id in Station.objects.values_list("pk", flat=True):
        before = Reading.objects.filter(station_id=station_id, at__lt=moment).order_by("-at")
        row = before.values_list("state", "plug").first()
        if row is not None:
            status[station_id] = row
    return status


def readings_to_keep(
    rows: Sequence[Row], start: datetime, bucket: timedelta, kept: Status | None
) -> tuple[list[int], Status | None]:
    """The ids that stay of one station's readings, and the status kept last.

    `rows` are in time order; buckets of `bucket` length begin at `start`. The
    last reading of a bucket stays (the value at its end), and so does every
    reading whose state or plug differs from the reading kept before it:
    thinning must not hide when a car was plugged in or started charging. A
    station's first reading stays too (`kept` is None: nothing was kept before
    it), which makes a second run find nothing more to delete.
    """
    stay: list[int] = []
    for index, (_, reading_id, at, state, plug) in enumerate(rows):
        is_last = (
            index + 1 == len(rows)
            or (rows[index + 1][2] - start) // bucket != (at - start) // bucket
        )
        if is_last or (state, plug) != kept:
            stay.append(reading_id)
            kept = (state, plug)
    return stay, kept


def _delete_all_but(in_slice: QuerySet[Reading], thinned: list[tuple[int, list[int]]]) -> int:
    """Delete the slice's readings of the `thinned` stations but those that stay.

    Naming the few readings that stay costs much less than naming the many
    that go.
    """
    deleted = 0
    # One short transaction per slice: the gateway keeps writing meanwhile,
    # and SQLite has one writer at a time.
    with transaction.atomic():
        for stations, stay in _batches(thinned):
            deleted += in_slice.filter(station_id__in=stations).exclude(pk__in=stay).delete()[0]
    return deleted


def _batches(thinned: list[tuple[int, list[int]]]) -> Iterator[tuple[list[int], list[int]]]:
    stations: list[int] = []
    stay: list[int] = []
    for station_id, ids in thinned:
        if stations and len(stations) + len(stay) + 1 + len(ids) > MAX_PARAMS:
            yield stations, stay
            stations, stay = [], []
        stations.append(station_id)
        stay += ids
    if stations:
        yield stations, stay


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _floor(moment: datetime, step: timedelta) -> datetime:
    day = _midnight(moment)
    return day + (moment - day) // step * step
