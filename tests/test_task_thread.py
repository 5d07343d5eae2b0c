"""Scheduled tasks in serve's own thread: due schedules run and leave their results.

The database is reached through sync_to_async, whose connection the suite closes
after each test (the thread under test closes its own)."""

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import time, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone
from django_q.models import Failure, Schedule, Success
from django_q.signals import post_execute

from chargers.live import GATEWAY_GROUP
from chargers.models import Rule
from chargers.rules.schedules import schedule_name
from chargers.task_thread import TaskThread

pytestmark = pytest.mark.django_db(transaction=True)

THIN_READINGS = "chargers.tasks.thin_readings_task"


@contextmanager
def finished_tasks(count: int) -> Iterator[threading.Event]:
    """An event set once `count` tasks have run and their results are stored."""
    done = threading.Event()
    finished: list[str] = []

    def saved(sender: Any, task: dict[str, Any], **kwargs: Any) -> None:
        finished.append(task["name"])
        if len(finished) >= count:
            done.set()

    post_execute.connect(saved, dispatch_uid="test_task_thread")
    try:
        yield done
    finally:
        post_execute.disconnect(dispatch_uid="test_task_thread")


@asynccontextmanager
async def task_thread() -> AsyncIterator[TaskThread]:
    thread = TaskThread()
    await thread.run()
    try:
        yield thread
    finally:
        await thread.stop()


def due(func: str, **fields: Any) -> Schedule:
    schedule: Schedule = Schedule.objects.create(
        func=func,
        schedule_type=Schedule.DAILY,
        next_run=timezone.now() - timedelta(minutes=1),
        **fields,
    )
    return schedule


async def test_a_due_schedule_runs_and_its_result_is_kept() -> None:
    schedule = await sync_to_async(due)(THIN_READINGS, name="thin readings, test")
    with finished_tasks(1) as done:
        async with task_thread():
            assert await asyncio.to_thread(done.wait, 30)

    def outcome() -> tuple[list[str], Schedule]:
        results = [str(row.result) for row in Success.objects.filter(func=THIN_READINGS)]
        return results, Schedule.objects.get(pk=schedule.pk)

    results, after = await sync_to_async(outcome)()
    assert results == ["Thinned old readings: deleted 0; old keep-alive commands: 0."]
    # The schedule moved on by a day, so it does not run again at once.
    assert after.next_run > timezone.now() + timedelta(hours=23)


async def test_a_failing_task_is_recorded_and_the_next_one_still_runs() -> None:
    def arrange() -> None:
        due("chargers.tasks.no_such_task", name="broken")
        due("chargers.tasks.rule_boundary_task", args="(999999,)", name="gone rule")

    await sync_to_async(arrange)()
    with finished_tasks(2) as done:
        async with task_thread():
            assert await asyncio.to_thread(done.wait, 30)

    def outcome() -> tuple[list[str], list[str]]:
        failed = [str(row.result) for row in Failure.objects.all()]
        succeeded = [str(row.result) for row in Success.objects.all()]
        return failed, succeeded

    failed, succeeded = await sync_to_async(outcome)()
    assert len(failed) == 1 and "no_such_task is not defined" in failed[0]
    assert succeeded == ["Rule #999999 no longer exists; its schedule is removed."]


async def test_a_rule_boundary_it_runs_wakes_the_gateway_at_once() -> None:
    # The boundary task runs in serve's process: its wake-up must reach the
    # gateway through the channel layer on serve's loop, as a web view's does.
    def arrange() -> None:
        rule = Rule.objects.create(
            name="Day", kind="current", starts_at=time(7), ends_at=time(22), current_a=10
        )
        Schedule.objects.filter(name=schedule_name(rule.pk)).update(
            next_run=timezone.now() - timedelta(seconds=1)
        )

    await sync_to_async(arrange)()
    layer = get_channel_layer()
    assert layer is not None
    gateway = await layer.new_channel()
    await layer.group_add(GATEWAY_GROUP, gateway)
    try:
        async with task_thread():
            message = await asyncio.wait_for(layer.receive(gateway), 30)
    finally:
        await layer.group_discard(GATEWAY_GROUP, gateway)

    assert message == {"type": "gateway.rules"}
