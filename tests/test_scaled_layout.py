"""README's "Running at scale", end to end: migrate, a gateway for the site, the task
cluster and two daphne processes, sharing PostgreSQL and Redis; and backups."""

import asyncio
import json
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from chargers.kecontact.emulator import Fleet
from tests import fault_scenarios as scenarios
from tests.databases import ChildDatabase, migrated_database
from tests.emulated import BROADCAST, free_port, station_address, until

MANAGE = Path(__file__).resolve().parents[1] / "manage.py"
DAPHNE = Path(sys.executable).with_name("daphne")
# Not the run's GATEWAY_HOST: a gateway left over from another test must not matter here.
GATEWAY = station_address(220)
STATION = station_address(221)
PASSWORD = "scaled-pass-1"


@asynccontextmanager
async def process(
    *command: str, env: dict[str, str], log: Path, ready: Callable[[], bool] | bytes
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, once `ready` holds (or its output, kept in `log`, shows it);
    stopped afterwards."""
    with log.open("wb") as output:
        child = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=output, stderr=asyncio.subprocess.STDOUT
        )

    def is_ready() -> bool:
        return ready() if callable(ready) else ready in log.read_bytes()

    try:
        async with asyncio.timeout(60):
            while not await asyncio.to_thread(is_ready):
                if child.returncode is not None:
                    said = await asyncio.to_thread(log.read_text)
                    raise AssertionError(f"{command[:3]} ended: {said[-2000:]}")
                await asyncio.sleep(0.1)
        yield child
    finally:
        if child.returncode is None:
            child.terminate()
            await asyncio.wait_for(child.wait(), 30)


async def manage(*args: str, env: dict[str, str]) -> str:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(MANAGE),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == 0, output.decode()
    return output.decode()


class FormValues(HTMLParser):
    """What a browser would submit of a page's form as it stands."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name", "")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") not in ("checkbox", "radio") or "checked" in a:
                self.values[name] = a.get("value", "on" if a.get("type") == "checkbox" else "")
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data


class Browser:
    """One person's session with one web process: cookies, CSRF, forms."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.cookies = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as reply:
            return str(reply.read().decode())

    def post(self, path: str, fields: dict[str, str]) -> tuple[str, str]:
        """Submit the form at `path` as shown, with `fields` changed; returns where it
        led and the page shown there."""
        form = FormValues()
        form.feed(self.get(path))
        body = urllib.parse.urlencode(form.values | fields).encode()
        url = self.base + path
        request = urllib.request.Request(url, body, headers={"Referer": url})
        with self.opener.open(request, timeout=60) as reply:
            return reply.url.removeprefix(self.base), reply.read().decode()

    def log_in(self) -> None:
        fields = {"username": "admin", "password": PASSWORD, "next": "/admin/"}
        landed, _ = self.post("/admin/login/?next=/admin/", fields)
        assert landed == "/admin/", "the admin did not log in"

    def cookie_header(self) -> str:
        return "; ".join(f"{cookie.name}={cookie.value}" for cookie in self.cookies)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def web_process(port: int, env: dict[str, str], log: Path) -> Any:
    command = [str(DAPHNE), "-b", "127.0.0.1", "-p", str(port), "kebaweb.asgi:application"]
    login = f"http://127.0.0.1:{port}/admin/login/"
    return process(*command, env=env, ready=lambda: answers(login), log=log)


@pytest.mark.scaled_only(
    reason="several processes on one database and one channel layer: PostgreSQL and Redis"
)
async def test_two_web_processes_a_gateway_and_the_task_cluster_work_as_one(
    tmp_path: Path,
) -> None:
    with migrated_database(tmp_path, migrated=False) as database:
        await play_the_scaled_layout(tmp_path, database)


async def play_the_scaled_layout(tmp_path: Path, database: ChildDatabase) -> None:
    env = database.env() | {"PYTHONUNBUFFERED": "1", "KEBA_BROADCAST": BROADCAST}
    await manage("migrate", "-v", "0", env=env)
    await manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "a@example.invalid",
        env=env | {"DJANGO_SUPERUSER_PASSWORD": PASSWORD},
    )
    first_port, second_port = free_port(), free_port()
    async with AsyncExitStack() as stack:
        fleet = await stack.enter_async_context(Fleet(broadcast=BROADCAST))
        emulated = await fleet.add(STATION, "p30c", serial="32000001")
        first = Browser(first_port)
        second = Browser(second_port)
        await stack.enter_async_context(web_process(first_port, env, tmp_path / "web-1.log"))
        await stack.enter_async_context(web_process(second_port, env, tmp_path / "web-2.log"))
        await asyncio.to_thread(first.log_in)
        await asyncio.to_thread(second.log_in)
        # The site first: its gateway refuses to start for a site that does not exist.
        await asyncio.to_thread(first.post, "/admin/chargers/site/add/", {"name": "Garage"})
        gateway_command = [sys.executable, str(MANAGE), "gateway", "--bind", GATEWAY]
        gateway = await stack.enter_async_context(
            process(
                *gateway_command,
                "--site",
                "Garage",
                env=env,
                ready=b"gateway listening",
                log=tmp_path / "gateway.log",
            )
        )
        # It logs nothing at kebaweb's log level: the task it runs below shows it works.
        await stack.enter_async_context(
            process(
                sys.executable,
                str(MANAGE),
                "qcluster",
                env=env,
                ready=lambda: True,
                log=tmp_path / "qcluster.log",
            )
        )

        # The first web process registers the station: the gateway identifies it.
        landed, page = await asyncio.to_thread(
            first.post,
            "/admin/chargers/station/add/",
            {"name": "Bay 1", "address": STATION, "_save": "Save"},
        )
        assert landed == "/admin/chargers/station/", page
        (station,) = database.rows("SELECT id, serial, model_label FROM chargers_station")
        assert (station["serial"], station["model_label"]) == ("32000001", "P30 c-series")
        (site,) = database.rows("SELECT id FROM chargers_site")
        landed, page = await asyncio.to_thread(
            first.post,
            f"/admin/chargers/station/{station['id']}/change/",
            {"site": str(site["id"]), "_save": "Save"},
        )
        assert landed == "/admin/chargers/station/", page

        # The second web process shows the dashboard's live socket and queues a command.
        headers = {"Cookie": second.cookie_header(), "Origin": second.base}
        socket_url = f"ws://127.0.0.1:{second_port}/ws/live/"
        async with connect(socket_url, additional_headers=headers, open_timeout=30) as live:
            landed, page = await asyncio.to_thread(
                second.post,
                "/admin/chargers/command/add/",
                {"station": str(station["id"]), "wire": "curr 10000", "_save": "Save"},
            )
            assert landed == "/admin/chargers/command/", page
            await frames_until(
                live,
                lambda frames: (
                    any(
                        frame.get("type") == "status"
                        and frame.get("station") == station["id"]
                        and frame.get("user_current_a") == 10.0
                        for frame in frames
                    )
                    and any(
                        frame.get("type") == "command" and frame.get("status") == "verified"
                        for frame in frames
                    )
                ),
            )
        assert emulated.user_current_ma == 10000
        await until(
            lambda: database.rows("SELECT status FROM chargers_command") == [{"status": "verified"}]
        )

        # The task cluster takes work from Redis and stores its result in PostgreSQL.
        await manage(
            "shell",
            "-c",
            "from django_q.tasks import async_task; "
            "async_task('chargers.tasks.thin_readings_task')",
            env=env,
        )
        await until(lambda: bool(database.rows("SELECT result FROM django_q_task WHERE success")))
        gateway.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(gateway.wait(), 30) == 0


async def frames_until(
    live: Any, enough: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """The JSON frames a live socket sends, until `enough` of them came."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        while not enough(frames):
            frames.append(json.loads(await live.recv()))
    return frames


@pytest.mark.scaled_only(
    reason="a database server that drops connections: SQLite has no server and no connection "
    "to lose"
)
async def test_the_gateway_keeps_recording_after_the_database_server_dropped_its_connection() -> (
    None
):
    async with scenarios.scenario("the database server drops the gateway's connection") as run:
        station = await run.fleet.add(station_address(222), "p30c", serial="32000002")
        await run.start_gateway(setup={"stations": [scenarios.station_row(station.host)]})
        assert await run.until(
            "the station online", run.check("SELECT 1 FROM chargers_station WHERE is_online")
        )
        # What a restart or failover of the server, or an idle timeout, does to a connection.
        (dropped,) = run.rows(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert dropped["n"] >= 1
        station.plug_in(scenarios.charging_car())
        await run.until("the session stored", run.check("SELECT 1 FROM chargers_session"))
        await run.until(
            "the station shown charging",
            run.check("SELECT 1 FROM chargers_station WHERE state = 3"),
        )
        assert run.result.ok, run.result.report()
