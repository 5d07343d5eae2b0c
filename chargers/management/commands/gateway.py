"""`manage.py gateway`: own UDP port 7090 and poll every enabled station."""

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from chargers.gateway import Gateway
from chargers.kecontact.client import KebaClient
from chargers.kecontact.errors import PortBusy
from chargers.management.arguments import ipv4
from chargers.models import Site
from chargers.runtime import broadcast_for


class Command(BaseCommand):
    help = "Run the gateway: poll stations, record sessions, execute commands."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--bind", type=ipv4, default=settings.KEBA_BIND, help="local UDP address"
        )
        parser.add_argument(
            "--broadcast",
            type=ipv4,
            help="where to look for moved stations (default: KEBA_BROADCAST, or one that "
            "suits --bind)",
        )
        parser.add_argument(
            "--site", help="poll only the stations of this site (one gateway per site or LAN)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        require_migrated()
        if options["site"] is not None:
            require_site(options["site"])
        bind = str(options["bind"])
        broadcast = str(options["broadcast"] or broadcast_for(bind))
        try:
            asyncio.run(self.run(bind, broadcast, options["site"]))
        except PortBusy as exc:
            raise CommandError(str(exc), returncode=2) from None

    async def run(self, bind: str, broadcast: str, site: str | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # A signal lets the poll in flight finish and its results be stored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with KebaClient(bind) as client:
            gateway = Gateway(client, broadcast=broadcast, site=site)
            running = asyncio.create_task(gateway.run(stop))
            # Only once it hears the channel layer: a command queued after this
            # line must not miss its wake-up.
            subscribed = asyncio.create_task(gateway.listening.wait())
            await asyncio.wait({running, subscribed}, return_when=asyncio.FIRST_COMPLETED)
            subscribed.cancel()
            if not running.done():
                self.stdout.write(f"gateway listening on {bind}:7090")
                self.stdout.flush()
            await running
        self.stdout.write("gateway stopped")


def require_migrated() -> None:
    """Unlike `serve`, the gateway does not migrate: at scale several gateways and
    web processes share the database, and migrating it is the operator's one step."""
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise CommandError(
            "the database is not migrated to this version of kebaweb: "
            "run `python manage.py migrate` first",
            returncode=2,
        )


def require_site(name: str) -> None:
    if Site.objects.filter(name=name).exists():
        return
    names = ", ".join(repr(site) for site in Site.objects.values_list("name", flat=True))
    choices = f"the sites are {names}" if names else "no site exists yet: add one in the admin"
    raise CommandError(f"--site {name!r}: no such site; {choices}", returncode=2)
