"""Memory of `manage.py serve --demo` with all its processes (PSS, so shared pages count once).

Starts serve in a fresh data folder on loopback addresses of its own, waits until
the home page answers and the demo has run a while, then sums the proportional
set size (Linux's /proc/PID/smaps_rollup) of serve and every process under it.

    .venv/bin/python bench/serve_memory.py [--settle 30] [--tasks thread|cluster]
        [--q-workers N]

--tasks picks where serve runs its scheduled tasks (KEBAWEB_TASKS): in a
thread of its own (the default) or in django-q2's cluster of processes.
"""

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB_PORT = 8791
UDP_BIND = "127.3.0.1"  # away from the demo's 127.0.0.x and the tests' ranges
DEMO_NETWORK = "127.3.0.2"


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        path = task / "children"
        if path.exists():
            found += [int(c) for c in path.read_text().split()]
    return found


def tree(pid: int) -> list[int]:
    pids = [pid]
    for child in children(pid):
        pids += tree(child)
    return pids


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def describe(pid: int) -> str:
    words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    text = " ".join(w.decode(errors="replace") for w in words if w)
    return text if len(text) < 70 else text[:67] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after the first page")
    parser.add_argument("--tasks", choices=("thread", "cluster"), default="thread")
    parser.add_argument("--q-workers", type=int, help="KEBAWEB_Q_WORKERS (default: the setting's)")
    args = parser.parse_args()
    print(f"$ {shlex.join([os.path.relpath(sys.executable), *sys.argv])}")
    with tempfile.TemporaryDirectory(prefix="kebaweb-memory-") as data_dir:
        env = dict(
            os.environ, KEBAWEB_DATA_DIR=data_dir, KEBAWEB_DEBUG="0", KEBAWEB_TASKS=args.tasks
        )
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        if args.q_workers is not None:
            env["KEBAWEB_Q_WORKERS"] = str(args.q_workers)
        command = [
            sys.executable,
            "manage.py",
            "serve",
            "--demo",
            f"--port={WEB_PORT}",
            f"--udp-bind={UDP_BIND}",
            f"--demo-network={DEMO_NETWORK}",
        ]
        serve = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{WEB_PORT}/admin/login/", timeout=5)
                    break
                except OSError:
                    if time.monotonic() > deadline or serve.poll() is not None:
                        raise SystemExit("serve did not answer") from None
                    time.sleep(0.5)
            time.sleep(args.settle)
            rows = [(pid, pss_kib(pid), describe(pid)) for pid in tree(serve.pid)]
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(60)
    total = sum(kib for _, kib, _ in rows)
    for pid, kib, text in rows:
        print(f"{kib / 1024:8.1f} MiB  {pid:>7}  {text}")
    print(f"{total / 1024:8.1f} MiB  PSS of serve and its {len(rows) - 1} processes")


if __name__ == "__main__":
    main()
