"""django-q2 schedules follow the rules: created, moved, removed with them."""

import asyncio
import zoneinfo
from datetime import datetime, time

import pytest
import time_machine
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django_q.models import Schedule
from pytest_django.fixtures import Settings

from chargers import live, tasks
from chargers.models import Rule, Station
from chargers.rules.schedules import schedule_name

VIENNA = zoneinfo.ZoneInfo("Europe/Vienna")


@pytest.fixture(autouse=True)
def _household_time_zone(settings: Settings) -> None:
    settings.TIME_ZONE = "Europe/Vienna"


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=VIENNA)


def day_limit() -> Rule:
    rule = Rule.objects.create(
        name="Day", kind="current", starts_at=time(7), ends_at=time(22), current_a=10
    )
    rule.stations.add(Station.objects.create(name="Garage", address="127.0.0.2"))
    return rule


def schedule_of(rule: Rule) -> Schedule | None:
    return Schedule.objects.filter(name=schedule_name(rule.pk)).first()


@pytest.mark.django_db
def test_a_new_rule_gets_a_schedule_at_its_next_boundary() -> None:
    with time_machine.travel(local("2025-06-04T06:00"), tick=False):
        rule = day_limit()
    schedule = schedule_of(rule)
    assert schedule is not None and schedule.func == "chargers.tasks.rule_boundary_task"
    assert schedule.next_run == local("2025-06-04T07:00")


@pytest.mark.django_db
def test_editing_the_rule_moves_its_schedule_and_pausing_removes_it() -> None:
    with time_machine.travel(local("2025-06-04T06:00"), tick=False):
        rule = day_limit()
        rule.starts_at = time(6, 30)
        rule.save()
        moved = schedule_of(rule)
        rule.paused = True
        rule.save()
    assert moved is not None and moved.next_run == local("2025-06-04T06:30")
    assert schedule_of(rule) is None


@pytest.mark.django_db
def test_a_rule_deleted_removes_its_schedule() -> None:
    rule = day_limit()
    assert schedule_of(rule) is not None
    rule.delete()
    assert not Schedule.objects.filter(name__startswith="Rule boundary").exists()


def received(channel: str) -> dict[str, object]:
    layer = get_channel_layer()
    assert layer is not None

    async def receive() -> dict[str, object]:
        return dict(await asyncio.wait_for(layer.receive(channel), 10))

    return async_to_sync(receive)()


@pytest.mark.django_db(transaction=True)
def test_the_task_at_a_boundary_wakes_the_gateway_and_moves_to_the_next_one() -> None:
    layer = get_channel_layer()
    assert layer is not None
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(live.GATEWAY_GROUP, channel)
    # The in-memory layer expires messages by the wall clock: each is read in its own time.
    with time_machine.travel(local("2025-06-04T06:00"), tick=False):
        rule = day_limit()
        assert received(channel)["type"] == "gateway.rules"  # the rule's creation
    with time_machine.travel(local("2025-06-04T07:00:01"), tick=False):
        summary = tasks.rule_boundary_task(rule.pk)
        assert received(channel)["type"] == "gateway.rules"
    schedule = schedule_of(rule)
    assert schedule is not None and schedule.next_run == local("2025-06-04T22:00")
    assert "gateway woken" in summary and "2025-06-04 22:00" in summary
