"""Which live sockets may go on streaming: a socket lives only as long as the login it
was opened with. Logging out ends it at once; a changed account or role makes it check
again; a re-check every few seconds catches what no signal reports (a session that
expired or was deleted, a change made by another process)."""

from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
    user_logged_out,
)
from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from chargers import live, roles

RECHECK_EVERY_S = 5.0

# Close codes the page reads (static/js/live.js): it reloads, and the server
# then shows the login page or the pages of the new role.
SIGNED_OUT = 4401
ROLE_CHANGED = 4403


@dataclass(frozen=True)
class Login:
    """What a socket was opened with."""

    user_id: int
    session_key: str = field(repr=False)  # a login: never in a log line
    role: str


def role_of(user: Any) -> str | None:
    if roles.sees_all_sessions(user):
        return "staff"
    if roles.can_control(user):
        return "member"
    if roles.can_view(user):
        return "viewer"
    return None


def login_of(scope: dict[str, Any]) -> Login | None:
    """The login of a socket being opened, if it has a role (else: refused, or a kiosk)."""
    user, session = scope.get("user"), scope.get("session")
    role = role_of(user)
    if user is None or role is None or session is None or not session.session_key:
        return None
    return Login(user.pk, session.session_key, role)


def verdict(login: Login) -> int | None:
    """How the socket must close now, or None while its login stands.

    Three small queries: the session, the user, the user's groups."""
    session = import_module(settings.SESSION_ENGINE).SessionStore(login.session_key)
    user = _signed_in_user(session)
    if user is None or user.pk != login.user_id:
        return SIGNED_OUT
    if role_of(user) != login.role:
        return ROLE_CHANGED
    return None


def _signed_in_user(session: SessionBase) -> Any | None:
    """django.contrib.auth.get_user without its side effects: a page's request may flush
    or re-key the session and send the new cookie; a socket can send no cookie, so it
    only reads. After SECRET_KEY was rotated the hash no longer matches: the socket
    closes, and the page's reload re-keys the session as Django does."""
    try:
        user_id = session[SESSION_KEY]
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:  # no such session any more: logged out, expired or deleted
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)  # None once inactive or deleted
    session_hash = session.get(HASH_SESSION_KEY)
    if user is None or not session_hash:
        return None
    # A new password changes the hash: every other login of the account ends.
    if not constant_time_compare(session_hash, user.get_session_auth_hash()):
        return None
    return user


@receiver(user_logged_out)
def _end_sockets_of_session(sender: Any, request: HttpRequest | None, **kwargs: Any) -> None:
    session_key = request.session.session_key if request is not None else None
    if session_key:
        # Robust: a channel layer that is down must not stop anybody logging out
        # (the re-check ends the socket a few seconds later).
        transaction.on_commit(
            lambda: async_to_sync(live.end_session_sockets)(session_key), robust=True
        )


def _recheck_after_commit(user_ids: list[int]) -> None:
    def send() -> None:
        for user_id in user_ids:
            async_to_sync(live.recheck_user_sockets)(user_id)

    # After the commit: the sockets' check must see the change. Robust: a channel
    # layer that is down must not undo the change to the account.
    transaction.on_commit(send, robust=True)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
@receiver(post_delete, sender=settings.AUTH_USER_MODEL)
def _recheck_sockets_of_account(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Also on every login (last_login is saved): the check finds nothing changed.
    _recheck_after_commit([instance.pk])


@receiver(m2m_changed, sender=get_user_model().groups.through)
def _recheck_sockets_of_members(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **kwargs: Any
) -> None:
    if not reverse:  # user.groups.add(group) and the like
        if action.startswith("post_"):
            _recheck_after_commit([instance.pk])
    elif action in ("post_add", "post_remove") and pk_set:  # group.user_set.remove(user)
        _recheck_after_commit(sorted(pk_set))
    elif action == "pre_clear":  # group.user_set.clear(): who they were, before they go
        _recheck_after_commit(list(instance.user_set.values_list("pk", flat=True)))
