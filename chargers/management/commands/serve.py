"""`manage.py serve`: kebaweb in one command, the embedded default.

Applies migrations, then runs daphne with the gateway on daphne's own event
loop (so the in-memory channel layer reaches the browsers) and the scheduled
tasks in a thread, or in django-q2's cluster as a supervised child process
(KEBAWEB_TASKS, see chargers/runtime.py). `--demo` adds emulated stations on
loopback addresses. SIGINT or SIGTERM stops everything in order.
"""

import asyncio
import ipaddress
import signal
import sys
from typing import Any

# First: it installs Twisted's asyncio reactor on `twisted_loop`, which must
# happen before anything imports the reactor (daphne is not an installed app).
import daphne.server
from channels.routing import get_default_application
from daphne.endpoints import build_endpoint_description_strings
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from twisted.internet import defer
from twisted.internet import reactor as _reactor

from chargers import demo
from chargers.kecontact.errors import KebaError
from chargers.management.arguments import ipv4, positive, tcp_port
from chargers.models import Station
from chargers.runtime import CLUSTER_PID_FILE, ClusterSupervisor, DemoOptions, Runtime
from chargers.task_thread import TaskThread

# The reactor module is replaced by the reactor object at install time.
reactor: Any = _reactor

DEFAULT_DEMO_NETWORK = "127.0.0.2"
DEMO_UDP_BIND = "127.0.0.1"  # not 0.0.0.0: the demo stations own 127.0.0.N:7090


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Command(BaseCommand):
    help = (
        "Run kebaweb: the web app, the gateway to the stations and the scheduled tasks, "
        "in one process (with KEBAWEB_TASKS=cluster, the task cluster as its child)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="web address (default 127.0.0.1)")
        parser.add_argument("--port", type=tcp_port, default=8000, help="web port (default 8000)")
        parser.add_argument(
            "--udp-bind",
            type=ipv4,
            metavar="ADDRESS",
            help="local address for UDP port 7090 (default: KEBA_BIND; 127.0.0.1 with --demo)",
        )
        parser.add_argument(
            "--no-tasks",
            action="store_true",
            help="run no scheduled tasks (when `manage.py qcluster` runs them elsewhere)",
        )
        parser.add_argument(
            "--demo", action="store_true", help="add emulated stations on loopback addresses"
        )
        parser.add_argument(
            "--demo-when-empty",
            action="store_true",
            help="use --demo while no real station is configured (the README's run command)",
        )
        parser.add_argument(
            "--demo-network",
            type=ipv4,
            default=ipaddress.IPv4Address(DEFAULT_DEMO_NETWORK),
            metavar="ADDRESS",
            help=f"address of the first demo station (default {DEFAULT_DEMO_NETWORK})",
        )
        parser.add_argument(
            "--demo-speed",
            type=positive,
            default=60.0,
            metavar="FACTOR",
            help="how much faster the demo's day runs (default 60: a day in 24 minutes)",
        )
        parser.add_argument(
            "--demo-seed", type=int, default=1, metavar="N", help="varies the demo's cars"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        if options["demo_when_empty"]:
            real = Station.objects.exclude(serial__in=demo.DEMO_SERIALS)
            options["demo"] = options["demo"] or not real.exists()
        udp_bind = self.udp_bind(options)
        loop: asyncio.AbstractEventLoop = daphne.server.twisted_loop
        asyncio.set_event_loop(loop)
        runtime = self.runtime(str(udp_bind), options)
        try:
            self.start(runtime, loop, options)
        except BaseException:
            loop.run_until_complete(runtime.stop())
            raise

        server: Any = daphne.server.Server(
            application=get_default_application(),
            endpoints=build_endpoint_description_strings(
                host=options["host"], port=options["port"]
            ),
            ready_callable=lambda: self.ready(server),
            verbosity=options["verbosity"],
        )
        reactor.addSystemEventTrigger(
            "before",
            "shutdown",
            lambda: defer.Deferred.fromFuture(loop.create_task(runtime.stop())),
        )
        # Twisted stops on SIGINT and SIGTERM; a closed terminal (SIGHUP) must
        # stop us just as cleanly, or a task cluster in its own process group lives on.
        signal.signal(signal.SIGHUP, lambda number, frame: reactor.callFromThread(reactor.stop))
        server.run()  # until a signal stops the reactor
        if not server.listening_addresses:
            loop.run_until_complete(runtime.stop())
            raise CommandError(
                f"cannot serve the web app on {url_host(options['host'])}:{options['port']} "
                "(see above); choose another --port or stop the program using it",
                returncode=2,
            )

    def runtime(self, udp_bind: str, options: dict[str, Any]) -> Runtime:
        demo_options = None
        if options["demo"]:
            demo_options = DemoOptions(
                network=options["demo_network"],
                speed=options["demo_speed"],
                seed=options["demo_seed"],
                time_zone=settings.TIME_ZONE,
            )
        return Runtime(udp_bind, tasks=self.tasks(options), demo=demo_options)

    def tasks(self, options: dict[str, Any]) -> ClusterSupervisor | TaskThread | None:
        if options["no_tasks"]:
            return None
        if settings.SERVE_TASKS == "thread":
            return TaskThread()
        return ClusterSupervisor(
            [sys.executable, "manage.py", "qcluster"],
            cwd=settings.BASE_DIR,
            pid_file=settings.DATA_DIR / CLUSTER_PID_FILE,
        )

    def start(
        self, runtime: Runtime, loop: asyncio.AbstractEventLoop, options: dict[str, Any]
    ) -> None:
        """Bind UDP, prepare the database, then start the gateway and the rest.

        Daphne's loop carries the Twisted reactor but is not running yet; it
        runs here until each step is done, so a busy port stops us before the
        database changes or a browser sees a page."""
        try:
            loop.run_until_complete(runtime.bind())
        except (KebaError, OSError) as exc:
            raise CommandError(str(exc), returncode=2) from None
        self.prepare_database(options)
        # The main thread is done with the database; the loop's threads open their own.
        connections.close_all()
        try:
            loop.run_until_complete(runtime.start())
        except (KebaError, OSError) as exc:
            raise CommandError(str(exc), returncode=2) from None

    def udp_bind(self, options: dict[str, Any]) -> ipaddress.IPv4Address:
        if not options["demo"]:
            return options["udp_bind"] or ipaddress.IPv4Address(settings.KEBA_BIND)
        bind: ipaddress.IPv4Address = options["udp_bind"] or ipaddress.IPv4Address(DEMO_UDP_BIND)
        if not bind.is_loopback:
            raise CommandError(
                f"--udp-bind {bind}: with --demo the gateway talks to stations on loopback "
                "addresses, so bind it to one too, e.g. 127.0.0.1",
                returncode=2,
            )
        try:
            addresses = demo.demo_addresses(options["demo_network"])
        except demo.DemoError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if bind in addresses:
            raise CommandError(
                f"--udp-bind {bind} is also the address of a demo station; "
                "choose another --demo-network",
                returncode=2,
            )
        return bind

    def prepare_database(self, options: dict[str, Any]) -> None:
        if not options["demo"]:
            disabled, locked = demo.retire(settings.DATA_DIR)
            if disabled:
                self.stdout.write(f"Stopped polling {disabled} demo station(s): run with --demo.")
            if locked:
                self.stdout.write("Locked the demo login: it works only with --demo.")
            if not Station.objects.exists():
                self.stdout.write(
                    "No stations are configured yet: add yours in the admin (Stations: Add "
                    "station, or Discover stations), or start with --demo to see kebaweb "
                    "with emulated stations."
                )
            if not get_user_model().objects.filter(is_superuser=True, is_active=True).exists():
                self.stdout.write(
                    "No administrator yet: create one with `python manage.py createsuperuser`."
                )
            return
        try:
            rows = demo.register_stations(options["demo_network"])
        except demo.DemoError as exc:
            raise CommandError(str(exc), returncode=2) from None
        password = demo.ensure_demo_user(settings.DATA_DIR)
        for row in rows:
            self.stdout.write(f"Demo station {row.name} at {row.address} ({row.model_label})")
        self.stdout.write(
            f"Demo login: {demo.DEMO_USERNAME} / {password} "
            f"(kept in {settings.DATA_DIR / demo.PASSWORD_FILE})"
        )

    def ready(self, server: daphne.server.Server) -> None:
        host, port = server.listening_addresses[0]
        self.stdout.write(f"kebaweb is running at http://{url_host(host)}:{port}/")
        self.stdout.flush()
