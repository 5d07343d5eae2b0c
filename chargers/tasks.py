"""Jobs the django-q2 cluster runs; each calls one service and returns a summary.

django-q2 stores the returned text with the task, so the admin shows what a
run did. Tasks take ids, never model instances.
"""

from chargers import retention
from chargers.rules import schedules


def thin_readings_task() -> str:
    readings = retention.thin_readings()
    keep_alives = retention.forget_keep_alives()
    return f"Thinned old readings: deleted {readings}; old keep-alive commands: {keep_alives}."


def rule_boundary_task(rule_id: int) -> str:
    return schedules.at_boundary(rule_id)
