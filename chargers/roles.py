"""Who may do what: viewers see, members also control and see their own sessions,
staff administer. Every view, control and socket asks these functions, on the server."""

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import AccessMixin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

VIEWERS = "viewers"
MEMBERS = "members"

View = TypeVar("View", bound=Callable[..., HttpResponse])


def _groups(user: Any) -> frozenset[str]:
    # Cached on the user object: a page asks several times, the database once.
    cached = getattr(user, "_kebaweb_groups", None)
    if cached is None:
        cached = frozenset(user.groups.values_list("name", flat=True))
        user._kebaweb_groups = cached
    return cached


def _active(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def sees_all_sessions(user: Any) -> bool:
    """Staff: the whole household's sessions, and the admin."""
    return _active(user) and bool(user.is_staff or user.is_superuser)


def can_control(user: Any) -> bool:
    """Members and staff: start, stop and limit charging."""
    return sees_all_sessions(user) or (_active(user) and MEMBERS in _groups(user))


def can_view(user: Any) -> bool:
    """Anyone with a role; an account without one sees nothing until staff gives it one."""
    return can_control(user) or (_active(user) and VIEWERS in _groups(user))


def public_dashboard() -> bool:
    """Kiosk mode: the dashboard, redacted and read-only, for anyone."""
    return bool(getattr(settings, "PUBLIC_DASHBOARD", False))


def _requiring(check: Callable[[Any], bool]) -> Callable[[View], View]:
    """Anonymous visitors go to the login page; a signed-in user without the role gets 403."""

    def decorator(view: View) -> View:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return login_required(checked)  # type: ignore[return-value]

    return decorator


viewer_required = _requiring(can_view)
member_required = _requiring(can_control)
staff_required = _requiring(sees_all_sessions)


class _RoleRequiredMixin(AccessMixin):
    """For class-based views: the same answers as the decorators."""

    raise_exception = False

    def has_role(self, user: Any) -> bool:
        raise NotImplementedError

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not self.has_role(request.user):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class ViewerRequiredMixin(_RoleRequiredMixin):
    def has_role(self, user: Any) -> bool:
        return can_view(user)


class MemberRequiredMixin(_RoleRequiredMixin):
    def has_role(self, user: Any) -> bool:
        return can_control(user)


class StaffRequiredMixin(_RoleRequiredMixin):
    def has_role(self, user: Any) -> bool:
        return sees_all_sessions(user)


def context(request: HttpRequest) -> dict[str, bool]:
    """What every template may ask: which parts of a page to show (the server checks again)."""
    user = request.user
    return {
        "can_view": can_view(user),
        "can_control": can_control(user),
        "sees_all_sessions": sees_all_sessions(user),
        "kiosk": public_dashboard() and not can_view(user),
    }
