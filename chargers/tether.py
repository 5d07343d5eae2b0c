"""Runs a command (serve's django-q2 cluster) so that it cannot outlive serve.

`python chargers/tether.py WATCHDOG_FD LABEL -- COMMAND...`, started by serve as
the leader of a new process group. Serve keeps the write end of a pipe whose
read end is WATCHDOG_FD: the pipe reaches end of file when serve is gone,
however it ended (kill -9 included, which no handler sees, and whichever of its
threads started us). The command is then asked to stop and, after a grace
period, the whole group is killed: django-q2's sentinel, pusher, monitor and
workers with it. LABEL only names whose cluster this is (serve's pid file), so
that a later serve can recognise a leftover one.
"""

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

# Time for running tasks to finish, as on a normal stop; then the group is killed.
GRACE_S = 10.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with(parent: int) -> Callable[[], None] | None:
    """For the child, before exec: SIGTERM when we die, even by SIGKILL.

    The signal follows the thread that forked the child; we have one thread."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # we died between fork and prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def stop_group(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(GRACE_S)
    # Whatever is left of the cluster, and we ourselves: nobody waits for us now.
    os.killpg(0, signal.SIGKILL)


def run(watchdog: int, command: Sequence[str]) -> int:
    child = subprocess.Popen(command, preexec_fn=die_with(os.getpid()))
    # serve's normal stop: django-q2 finishes its running tasks on SIGTERM.
    signal.signal(signal.SIGTERM, lambda signum, frame: child.terminate())
    while child.poll() is None:
        readable, _, _ = select.select([watchdog], [], [], 1.0)
        if readable and not os.read(watchdog, 1):
            stop_group(child)
    return child.returncode


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        raise SystemExit("usage: tether.py WATCHDOG_FD LABEL -- COMMAND...")
    status = run(int(argv[0]), argv[3:])
    if status < 0:
        # Die of the same signal, so that serve sees what happened to the command.
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    raise SystemExit(status)


if __name__ == "__main__":
    main(sys.argv[1:])
