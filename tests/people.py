"""Users in each role, built by hand for tests."""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from chargers.roles import MEMBERS, VIEWERS

PASSWORD = "a long test password 42"


def person(role: str, username: str | None = None) -> Any:
    """A user who is a "viewer", "member", "staff", or has "none" of the roles."""
    user = get_user_model().objects.create_user(username or role, password=PASSWORD)
    if role == "staff":
        user.is_staff = True
        user.save()
    elif role in ("viewer", "member"):
        group = {"viewer": VIEWERS, "member": MEMBERS}[role]
        # get_or_create: transactional tests flush what the migration created.
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user
