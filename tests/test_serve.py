"""`manage.py serve`: the whole embedded program as a user starts it, and its supervisor."""

import asyncio
import http.cookiejar
import os
import re
import signal
import sqlite3
import sys
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from playwright.async_api import async_playwright
from pytest_django.fixtures import Settings

from chargers.demo import DEMO_SERIALS, DEMO_USERNAME
from chargers.kecontact.emulator import Fleet
from chargers.runtime import BackOff, ClusterSupervisor, DemoOptions, RestartPolicy, Runtime
from tests.emulated import BROADCAST, GATEWAY_HOST, free_port, station_address, until

pytestmark = pytest.mark.sqlite_only(
    reason="`serve` is the embedded layout: one process over the SQLite file in its data dir; "
    "tests/test_scaled_layout.py starts the scaled layout's processes"
)

MANAGE = Path(__file__).resolve().parents[1] / "manage.py"
# Addresses no other test of this run uses, so a server left over cannot disturb them.
UDP_BIND = station_address(200)
DEMO_NETWORK = station_address(201)
DEMO_NAMES = {"Demo P30 c", "Demo P20", "Demo P30 x"}
Q_WORKERS = 2
# django-q2's leader, sentinel, pusher, monitor and workers, under our tether.
CLUSTER_SIZE = 1 + 4 + Q_WORKERS
CHROMIUM = "/usr/bin/chromium"  # Debian's; scripts/test installs it
# Headless as root, and no calls home: this machine has no network beyond loopback.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def serve_command(port: int, *options: str, tasks: str | None = None) -> list[str]:
    """`tasks`: where scheduled tasks run (KEBAWEB_TASKS); None: nowhere."""
    return [
        sys.executable,
        str(MANAGE),
        "serve",
        "--demo",
        "--port",
        str(port),
        *([] if tasks else ["--no-tasks"]),
        "--udp-bind",
        UDP_BIND,
        "--demo-network",
        DEMO_NETWORK,
        *options,
    ]


def environment(data_dir: Path, tasks: str | None = None) -> dict[str, str]:
    return os.environ | {
        "KEBAWEB_DATA_DIR": str(data_dir),
        "KEBAWEB_TASKS": tasks or "thread",
        "KEBAWEB_Q_WORKERS": str(Q_WORKERS),
        "PYTHONUNBUFFERED": "1",
        "KEBA_BROADCAST": BROADCAST,
    }


@asynccontextmanager
async def serving(
    data_dir: Path, tasks: str | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """`serve --demo` in its own data directory, once it says it is ready."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *serve_command(port, tasks=tasks),
        env=environment(data_dir, tasks),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            while b"kebaweb is running at" not in (line := await process.stdout.readline()):
                assert line, "serve exited before it was ready"
        assert line.decode().strip() == f"kebaweb is running at http://127.0.0.1:{port}/"
        yield process, port
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def fetch(url: str, opener: urllib.request.OpenerDirector | None = None) -> tuple[int, str]:
    with (opener or urllib.request.build_opener()).open(url, timeout=10) as response:
        return response.status, response.read().decode()


def demo_login(port: int, data_dir: Path) -> urllib.request.OpenerDirector:
    """A client logged in as the demo's administrator, as a person does it."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    _, form = fetch(f"http://127.0.0.1:{port}/login/", opener)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token is not None
    fields = {
        "csrfmiddlewaretoken": token.group(1),
        "username": DEMO_USERNAME,
        "password": (data_dir / "demo_password").read_text().strip(),
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/login/",
        data=urllib.parse.urlencode(fields).encode(),
        headers={"Referer": f"http://127.0.0.1:{port}/login/"},
    )
    with opener.open(request, timeout=10) as response:
        assert response.url == f"http://127.0.0.1:{port}/", "the demo login failed"
    return opener


def online_stations(data_dir: Path) -> set[str]:
    uri = f"file:{data_dir / 'kebaweb.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        rows = db.execute("SELECT name FROM chargers_station WHERE is_online").fetchall()
    return {name for (name,) in rows}


def shows_live_data(page: str) -> bool:
    return (
        all(name in page for name in DEMO_NAMES)
        and page.count('class="badge online"') == len(DEMO_NAMES)
        # The demo's day starts in the evening: two cars charge, whatever the hour.
        and page.count('data-field="state_label">charging</dd>') == 2
    )


async def test_it_serves_the_demo_until_terminated(tmp_path: Path) -> None:
    async with serving(tmp_path) as (process, port):
        home_status, _ = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}/")
        login_status, login = await asyncio.to_thread(
            fetch, f"http://127.0.0.1:{port}/admin/login/"
        )
        # The gateway in serve's loop polls the emulated stations in the same loop.
        await until(lambda: online_stations(tmp_path) == DEMO_NAMES)
        # …and the home page shows what it read: all online, a car charging.
        home = f"http://127.0.0.1:{port}/"
        opener = await asyncio.to_thread(demo_login, port, tmp_path)
        await until(lambda: shows_live_data(fetch(home, opener)[1]))

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            status = await process.wait()

    assert home_status == 200
    assert login_status == 200 and "Username" in login
    assert status == 0
    assert (tmp_path / "demo_password").read_text().strip()


async def test_it_refuses_to_share_the_udp_port_with_a_running_gateway(tmp_path: Path) -> None:
    async with serving(tmp_path):
        second = await asyncio.create_subprocess_exec(
            *serve_command(free_port()),
            env=environment(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            _, stderr = await second.communicate()

    message = stderr.decode()
    assert second.returncode == 2
    assert f"UDP port 7090 on {UDP_BIND} is already in use by another program" in message
    assert "Traceback" not in message


# The cluster supervisor, with stand-in commands instead of django-q2


FAST = RestartPolicy(check_every_s=0.01, first_delay_s=0.01, max_delay_s=0.05)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_it_restarts_the_cluster_when_it_dies(tmp_path: Path) -> None:
    supervisor = ClusterSupervisor(
        python("raise SystemExit(3)"), tmp_path, tmp_path / "cluster.pid", FAST
    )
    task = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(20):
            while supervisor.restarts < 2:
                await asyncio.sleep(0.01)
    finally:
        await supervisor.stop()
        await asyncio.wait_for(task, 5)
    assert supervisor.restarts >= 2


async def test_it_stops_the_cluster_on_shutdown(tmp_path: Path) -> None:
    supervisor = ClusterSupervisor(
        python("import time; time.sleep(60)"), tmp_path, tmp_path / "cluster.pid", FAST
    )
    task = asyncio.create_task(supervisor.run())
    async with asyncio.timeout(10):
        while supervisor.process is None:
            await asyncio.sleep(0.01)
    await supervisor.stop(timeout_s=5)
    await asyncio.wait_for(task, 5)
    assert supervisor.process is not None
    assert supervisor.process.returncode == -signal.SIGTERM
    assert supervisor.restarts == 0


async def test_it_kills_a_cluster_that_does_not_stop(tmp_path: Path) -> None:
    stubborn = (
        "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path('deaf').touch(); time.sleep(60)"
    )
    supervisor = ClusterSupervisor(python(stubborn), tmp_path, tmp_path / "cluster.pid", FAST)
    supervisor.start()
    await until((tmp_path / "deaf").exists, timeout_s=10)
    await supervisor.stop(timeout_s=0.5)
    assert supervisor.process is not None
    assert supervisor.process.returncode == -signal.SIGKILL


def test_it_restarts_at_most_a_few_times_a_minute() -> None:
    now = 0.0
    backoff = BackOff(RestartPolicy(max_restarts=3, window_s=60), now=lambda: now)
    delays, restarted_at = [], []
    for _ in range(4):
        delays.append(backoff.delay_after_failure(ran_for_s=0.5))
        restarted_at.append(now + delays[-1])
        now = restarted_at[-1] + 0.5  # and it dies again
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert restarted_at[3] - restarted_at[0] >= 60


def test_it_forgets_old_failures_after_a_healthy_run() -> None:
    backoff = BackOff(RestartPolicy(window_s=60))
    backoff.delay_after_failure(ran_for_s=1)
    backoff.delay_after_failure(ran_for_s=1)
    assert backoff.delay_after_failure(ran_for_s=3600) == 1.0


async def test_a_browser_shows_the_demo_stations_with_live_data(tmp_path: Path) -> None:
    async with serving(tmp_path) as (_process, port), async_playwright() as playwright:
        opener = await asyncio.to_thread(demo_login, port, tmp_path)
        await until(lambda: shows_live_data(fetch(f"http://127.0.0.1:{port}/", opener)[1]))
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        await page.goto(f"http://127.0.0.1:{port}/")
        await page.fill("#id_username", DEMO_USERNAME)
        await page.fill("#id_password", (tmp_path / "demo_password").read_text().strip())
        await page.click("button[type=submit]")
        names = await page.locator(".station h2").all_inner_texts()
        badges = await page.locator(".station .badge").all_inner_texts()
        states = await page.locator(".station dd.state").all_inner_texts()
        await page.locator("#live-status[data-state=live]").wait_for(timeout=30000)
        await page.screenshot(path=str(tmp_path / "home.png"), full_page=True)
        await browser.close()
    assert sorted(names) == sorted(DEMO_NAMES)
    assert [badge.strip() for badge in badges] == ["online"] * len(DEMO_NAMES)
    assert "charging" in states


# Scheduled tasks: in serve's own thread by default, or in a cluster


def tasks_done(data_dir: Path) -> list[str]:
    """The functions of the tasks that ran and succeeded."""
    uri = f"file:{data_dir / 'kebaweb.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        rows = db.execute("SELECT func FROM django_q_task WHERE success").fetchall()
    return [str(func) for (func,) in rows]


async def test_serve_runs_a_due_schedule_in_its_own_process(tmp_path: Path) -> None:
    # The daily retention run, due now: as on the first start after a night off.
    make_due = (
        "from django.utils import timezone; from django_q.models import Schedule; "
        "Schedule.objects.filter(func='chargers.tasks.thin_readings_task')"
        ".update(next_run=timezone.now())"
    )
    for arguments in (["migrate", "-v0"], ["shell", "-c", make_due]):
        manage = await asyncio.create_subprocess_exec(
            sys.executable, str(MANAGE), *arguments, env=environment(tmp_path)
        )
        assert await manage.wait() == 0

    async with serving(tmp_path, tasks="thread"):
        await until(lambda: bool(tasks_done(tmp_path)), timeout_s=60)
        clusters = cluster_groups(tmp_path)

    assert tasks_done(tmp_path) == ["chargers.tasks.thin_readings_task"]
    assert clusters == {}  # no second Django process was started for it


# The task cluster lives and dies with serve


def live_processes() -> dict[int, tuple[int, bytes, bytes]]:
    """pid: (process group, command line, environment) of every live process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        state, _parent, group = stat.rsplit(")", 1)[1].split()[:3]
        if state != "Z":  # a zombie has died already
            found[int(entry.name)] = (int(group), command, environ)
    return found


def cluster_groups(data_dir: Path) -> dict[int, set[int]]:
    """The process groups of task clusters working on this data dir, with their pids."""
    marker = b"KEBAWEB_DATA_DIR=" + os.fsencode(str(data_dir)) + b"\0"
    groups: dict[int, set[int]] = {}
    for pid, (group, command, environ) in live_processes().items():
        if b"qcluster" in command and marker in environ:
            groups.setdefault(group, set()).add(pid)
    return groups


def one_whole_cluster(data_dir: Path) -> bool:
    groups = cluster_groups(data_dir)
    return len(groups) == 1 and all(len(pids) == CLUSTER_SIZE for pids in groups.values())


def group_members(group: int) -> set[int]:
    return {pid for pid, (pgid, _, _) in live_processes().items() if pgid == group}


async def test_the_task_cluster_dies_with_serve_and_one_runs_after_a_restart(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, tasks="cluster") as (process, _port):
        await until(lambda: one_whole_cluster(tmp_path), timeout_s=60)
        [first] = cluster_groups(tmp_path)
        process.kill()  # no handler of serve's runs
        await process.wait()
        # Running tasks get the tether's grace period (10 s) to finish.
        await until(lambda: not group_members(first), timeout_s=60)

    async with serving(tmp_path, tasks="cluster"):
        await until(lambda: one_whole_cluster(tmp_path), timeout_s=60)
        [second] = cluster_groups(tmp_path)
    assert second != first


async def test_it_stops_a_cluster_left_over_from_an_earlier_run(tmp_path: Path) -> None:
    pid_file = tmp_path / "cluster.pid"
    sleeper = python("import time; time.sleep(60)")
    earlier = ClusterSupervisor(sleeper, tmp_path, pid_file, FAST)
    later = ClusterSupervisor(sleeper, tmp_path, pid_file, FAST)
    try:
        earlier.start()
        assert earlier.process is not None
        leftover = earlier.process.pid
        await until(lambda: len(group_members(leftover)) == 2)  # the tether and its command
        later.start()
        assert later.process is not None
        current = later.process.pid
        await until(lambda: not group_members(leftover), timeout_s=10)
        await until(lambda: len(group_members(current)) == 2)
        assert pid_file.read_text().strip() == str(current)
    finally:
        await later.stop()
        await earlier.stop()


async def test_it_leaves_alone_a_stranger_with_the_recorded_pid(tmp_path: Path) -> None:
    pid_file = tmp_path / "cluster.pid"
    stranger = await asyncio.create_subprocess_exec(
        *python("import time; time.sleep(60)"), process_group=0
    )
    pid_file.write_text(f"{stranger.pid}\n")
    supervisor = ClusterSupervisor(python("import time; time.sleep(60)"), tmp_path, pid_file, FAST)
    try:
        supervisor.start()
        assert supervisor.process is not None
        ours = supervisor.process.pid
        await until(lambda: len(group_members(ours)) == 2)
        assert stranger.returncode is None and group_members(stranger.pid) == {stranger.pid}
    finally:
        await supervisor.stop()
        stranger.kill()
        await stranger.wait()


# Discovery: KEBA_BROADCAST wins; on loopback the default stays on the stations' /24


def demo_runtime() -> Runtime:
    demo = DemoOptions(network=IPv4Address(station_address(2)), speed=1, seed=1, time_zone="UTC")
    return Runtime(GATEWAY_HOST, tasks=None, demo=demo)


async def test_the_gateway_finds_the_demo_stations_on_loopback(
    settings: Settings,
) -> None:
    settings.KEBA_BROADCAST = None
    runtime = demo_runtime()
    try:
        await runtime.bind()
        assert runtime.client is not None and runtime.demo is not None
        await runtime.demo.start()
        found = await runtime.client.discover(runtime.broadcast)
    finally:
        await runtime.stop()
    assert sorted(station.report.serial for station in found) == sorted(DEMO_SERIALS)


async def test_an_explicit_keba_broadcast_wins_on_loopback(settings: Settings) -> None:
    elsewhere = station_address(254)
    settings.KEBA_BROADCAST = elsewhere
    runtime = demo_runtime()
    try:
        async with Fleet(broadcast=elsewhere) as fleet:
            await fleet.add(station_address(10), "p30c", serial="31000010")
            await runtime.bind()
            assert runtime.client is not None and runtime.demo is not None
            await runtime.demo.start()
            found = await runtime.client.discover(runtime.broadcast)
    finally:
        await runtime.stop()
    assert [station.report.serial for station in found] == ["31000010"]
