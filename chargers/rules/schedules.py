"""django-q2 schedules at rule boundaries: one per rule, kept in step with the rule.

Each fires once at the rule's next boundary (a window opening or closing, a new
day or week for a cap), wakes the gateway so the change holds within seconds,
and moves itself to the boundary after. They are a shortcut, not the mechanism:
the gateway's own scan and its reconciliation after each poll make the rule
true if the cluster is down.
"""

from datetime import timedelta

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from django_q.models import Schedule

from chargers import live
from chargers.models import Fallback, Override, Rule

from . import book
from .desired import boundaries

TASK = "chargers.tasks.rule_boundary_task"
LOOK_AHEAD = timedelta(days=8)  # every rule has a boundary within a week and a day


def schedule_name(rule_id: int) -> str:
    return f"Rule boundary: rule #{rule_id}"


def sync(rule: Rule) -> Schedule | None:
    """Create, move or delete the rule's schedule; the schedule, if it has one."""
    now = timezone.now()
    ahead = (
        []
        if rule.paused
        else boundaries(now, now + LOOK_AHEAD, [book.rule_spec(rule)], [], book.zone())
    )
    if not ahead:
        forget(rule.pk)
        return None
    schedule, _ = Schedule.objects.update_or_create(
        name=schedule_name(rule.pk),
        defaults={
            "func": TASK,
            "args": str(rule.pk),
            "schedule_type": Schedule.ONCE,
            "repeats": 1,  # kept after it runs; the task moves it to the next boundary
            "next_run": ahead[0],
        },
    )
    return schedule


def forget(rule_id: int) -> None:
    Schedule.objects.filter(name=schedule_name(rule_id)).delete()


def wake_gateway() -> None:
    """After the transaction: the gateway reloads the rules and reconciles at once."""
    transaction.on_commit(lambda: async_to_sync(live.wake_gateway_rules)())


def at_boundary(rule_id: int) -> str:
    rule = Rule.objects.filter(pk=rule_id).first()
    if rule is None:
        forget(rule_id)
        return f"Rule #{rule_id} no longer exists; its schedule is removed."
    wake_gateway()
    schedule = sync(rule)
    after = (
        f"next boundary {timezone.localtime(schedule.next_run):%Y-%m-%d %H:%M}"
        if (schedule and schedule.next_run)
        else "no further boundary"
    )
    return f"{rule}: boundary reached, gateway woken; {after}."


@receiver(post_save, sender=Rule)
def _rule_saved(sender: type[Rule], instance: Rule, **kwargs: object) -> None:
    sync(instance)
    wake_gateway()


@receiver(post_delete, sender=Rule)
def _rule_deleted(sender: type[Rule], instance: Rule, **kwargs: object) -> None:
    forget(instance.pk)
    wake_gateway()


@receiver(post_save, sender=Override)
@receiver(post_save, sender=Fallback)
@receiver(post_delete, sender=Fallback)
def _override_or_fallback_changed(sender: type, **kwargs: object) -> None:
    wake_gateway()
