"""`manage.py gateway`: own UDP port 7090 and poll every enabled station."""

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chargers.gateway import Gateway
from chargers.kecontact.client import KebaClient
from chargers.kecontact.errors import PortBusy


class Command(BaseCommand):
    help = "Run the gateway: poll stations, record sessions, execute commands."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=settings.KEBA_BIND, help="local UDP address")
        parser.add_argument(
            "--broadcast", default=settings.KEBA_BROADCAST, help="where to look for moved stations"
        )
        parser.add_argument(
            "--site", help="poll only the stations of this site (one gateway per site or LAN)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            asyncio.run(self.run(options["bind"], options["broadcast"], options["site"]))
        except PortBusy as exc:
            raise CommandError(str(exc)) from None

    async def run(self, bind: str, broadcast: str, site: str | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # A signal lets the poll in flight finish and its results be stored.
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with KebaClient(bind) as client:
            self.stdout.write(f"gateway listening on {bind}:7090")
            await Gateway(client, broadcast=broadcast, site=site).run(stop)
        self.stdout.write("gateway stopped")
