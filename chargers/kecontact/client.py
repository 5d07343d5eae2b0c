"""One UDP socket on port 7090 shared by every station, with KEBA's pacing.

Requests to one station are serialised by that station's lock and spaced by
the timing table; different stations proceed in parallel. A station answers
on port 7090 of the sender, so replies are matched by source address and by
the kind of reply expected, and a report must carry the serial of the station
identified at that address. `datagram_received` only routes: a datagram from
an address we did not ask is counted and reported to listeners as a
`Stranger`, and never changes what the client believes about a station.
"""

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

from .codec import (
    Ack,
    Firmware,
    Malformed,
    Message,
    Report,
    Report1,
    Report2,
    Report3,
    SessionReport,
    decode,
)
from .commands import Command, Reply, check_supported, identify, report
from .errors import ImpossibleValue, KebaError, PortBusy, Refused, Timeout, WrongStation
from .timing import Clock, Timing

KEBA_PORT = 7090
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024  # a fleet's replies arrive in bursts
MAX_SCAN_ADDRESSES = 4096

Listener = Callable[[str, "Message | Stranger"], None]


@dataclass
class ClientStats:
    sent: int = 0
    received: int = 0
    retries: int = 0
    timeouts: int = 0
    malformed: int = 0  # datagrams that did not decode
    unknown_sender: int = 0  # from addresses that are no station of ours
    unmatched: int = 0  # late or duplicate replies nobody waited for


@dataclass(frozen=True)
class Stranger:
    """A datagram from an address that is no station of ours: reported, never obeyed.

    `serial` is the serial it claims, if any: anyone on the LAN can claim one."""

    host: str
    serial: str | None


@dataclass(frozen=True)
class FoundStation:
    host: str
    report: Report1


@dataclass
class _Peer:
    host: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready_at: float = 0.0  # station clock time before which nothing may be sent
    x2_switched_at: float | None = None
    waiting_for: Command | None = None
    reply: "asyncio.Future[Message] | None" = None
    identity: Report1 | None = None


def _answers(command: Command, message: Message) -> bool:
    if command.reply is Reply.FIRMWARE:
        return isinstance(message, Firmware)
    if command.reply is Reply.ACK:
        return isinstance(message, Ack)
    return getattr(message, "report_id", None) == command.report_id and not isinstance(message, Ack)


def _as_reply_of(host: str, exc: Malformed) -> Malformed:
    """The codec's error, told as the reply of `host`; `summary` stays free of the value."""
    if isinstance(exc, ImpossibleValue):
        said = f"{host} sent an impossible value, so its reply was not used: "
        return ImpossibleValue(said + str(exc), said + exc.summary, exc.field)
    said = f"{host} sent an unreadable reply: "
    return Malformed(said + str(exc), said + exc.summary)


class KebaClient(asyncio.DatagramProtocol):
    def __init__(
        self,
        bind_host: str = "0.0.0.0",
        port: int = KEBA_PORT,
        *,
        timing: Timing | None = None,
        clock: Clock | None = None,
        reply_timeout_s: float = 1.5,
        retries: int = 2,
        receive_buffer_bytes: int = RECEIVE_BUFFER_BYTES,
    ) -> None:
        self.bind_host = bind_host
        self.port = port
        self.timing = timing or Timing()
        self.clock = clock or Clock()
        self.reply_timeout_s = reply_timeout_s
        self.retries = retries
        self.receive_buffer_bytes = receive_buffer_bytes
        self.stats = ClientStats()
        self._peers: dict[str, _Peer] = {}
        self._listeners: list[Listener] = []
        self._firmware_replies: dict[str, Firmware] | None = None
        self._transport: asyncio.DatagramTransport | None = None

    # Socket life cycle

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # Deliberately no SO_REUSEADDR: a second program must fail loudly
            # instead of silently stealing replies (PROTOCOL.md section 1).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer_bytes)
            sock.bind((self.bind_host, self.port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortBusy(
                    f"UDP port {self.port} on {self.bind_host} is already in use by another "
                    "program. KEBA stations answer only on port 7090, so only one program per "
                    "host can talk to them: stop the other one (another kebaweb gateway, evcc, "
                    "a Home Assistant or ioBroker KEBA integration, KEBA's own tools), or bind "
                    "this one to a different local address."
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise PortBusy(
                    f"cannot bind to {self.bind_host}: that address is not on this machine"
                ) from None
            raise
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=sock)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> "KebaClient":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Listeners (status messages, boot lines, moved stations)

    def subscribe(self, listener: "Listener") -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _notify(self, host: str, message: "Message | Stranger") -> None:
        for listener in list(self._listeners):
            listener(host, message)

    # Receiving

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        host = str(addr[0])
        self.stats.received += 1
        if data.strip() == b"i":
            return  # our own discovery broadcast, looped back
        peer = self._peers.get(host)
        try:
            message = decode(data)
        except Malformed as exc:
            self.stats.malformed += 1
            if peer is not None and peer.reply is not None and not peer.reply.done():
                # The station we wait for sent something unreadable: say so
                # instead of a vague timeout (the request may retry).
                peer.reply.set_exception(_as_reply_of(host, exc))
            return
        if self._firmware_replies is not None and isinstance(message, Firmware):
            self._firmware_replies[host] = message
            return
        if peer is None:
            self.stats.unknown_sender += 1
            self._notify(host, Stranger(host, getattr(message, "serial", None)))
            return
        waiting = peer.waiting_for
        if waiting and peer.reply and not peer.reply.done() and _answers(waiting, message):
            peer.reply.set_result(message)
            return
        if isinstance(message, Ack | Firmware) or hasattr(message, "report_id"):
            self.stats.unmatched += 1
            return
        self._notify(host, message)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the request simply times out.
        pass

    # Sending

    def _peer(self, host: str) -> _Peer:
        ipaddress.IPv4Address(host)  # a clear ValueError for a bad address
        peer = self._peers.get(host)
        if peer is None:
            peer = self._peers[host] = _Peer(host)
        return peer

    def identity_of(self, host: str) -> Report1 | None:
        """Report 1 as last read from `host`, if it was read."""
        peer = self._peers.get(host)
        return peer.identity if peer else None

    def _send(self, data: bytes, host: str) -> None:
        if self._transport is None:
            raise KebaError("the client is not started")
        self._transport.sendto(data, (host, self.port))
        self.stats.sent += 1

    async def request(self, host: str, command: Command) -> Message:
        """Send one command and return its reply, keeping the station's pacing.

        Raises Refused for TCH-ERR (or a pacing rule the request would break),
        Unsupported for a command the station's model cannot do, and Timeout
        once the retries of an idempotent request are spent.
        """
        peer = self._peer(host)
        if peer.identity is not None and peer.identity.product_info is not None:
            check_supported(command, peer.identity.product_info)
        async with peer.lock:
            self._check_x2_cooldown(peer, command)
            attempts = 1 + (self.retries if command.idempotent else 0)
            unreadable: Malformed | None = None
            for attempt in range(attempts):
                if attempt:
                    self.stats.retries += 1
                try:
                    message = await self._exchange(peer, command)
                except Malformed as exc:
                    unreadable = exc
                    continue
                if message is not None:
                    return self._accept(peer, command, message)
            if unreadable is not None:
                raise unreadable
            self.stats.timeouts += 1
            raise Timeout(self._timeout_text(peer, command, attempts))

    async def _exchange(self, peer: _Peer, command: Command) -> Message | None:
        delay = peer.ready_at - self.clock.monotonic()
        if delay > 0:
            await self.clock.sleep(delay)
        loop = asyncio.get_running_loop()
        peer.waiting_for, peer.reply = command, loop.create_future()
        try:
            self._send(command.wire.encode("ascii"), peer.host)
            sent_at = self.clock.monotonic()
            quiet = self.timing.ena_quiet_s if command.wire == "ena 0" else self.timing.min_gap_s
            peer.ready_at = sent_at + quiet
            return await asyncio.wait_for(peer.reply, self.reply_timeout_s)
        except TimeoutError:
            return None
        finally:
            peer.waiting_for = peer.reply = None

    def _accept(self, peer: _Peer, command: Command, message: Message) -> Message:
        if isinstance(message, Ack) and not message.ok:
            raise Refused(f"{peer.host} refused `{command.wire}`: {message.text}")
        if command.name == "x2":
            peer.x2_switched_at = self.clock.monotonic()
        if isinstance(message, Report1):
            peer.identity = message
        else:
            self._check_serial(peer, message)
        return message

    def _check_serial(self, peer: _Peer, message: Message) -> None:
        """Reports 2, 3 and 1xx name their station: one that is not the station
        identified at this address must not pass as its data (an address swap)."""
        serial = getattr(message, "serial", None)
        expected = peer.identity.serial if peer.identity else None
        if serial and expected and serial != expected:
            peer.identity = None  # identify again before trusting this address
            raise WrongStation(
                f"{peer.host} answered as station {serial}, but station {expected} was "
                "identified there: the address now belongs to another station"
            )

    def _check_x2_cooldown(self, peer: _Peer, command: Command) -> None:
        if command.name != "x2" or peer.x2_switched_at is None:
            return
        waited = self.clock.monotonic() - peer.x2_switched_at
        if waited < self.timing.x2_cooldown_s:
            left = self.timing.x2_cooldown_s - waited
            raise Refused(
                f"{peer.host}: phases were switched {waited:.0f} s ago; KEBA allows the next "
                f"switch after {self.timing.x2_cooldown_s:.0f} s, so wait {left:.0f} s more"
            )

    def _timeout_text(self, peer: _Peer, command: Command, attempts: int) -> str:
        text = (
            f"no reply from {peer.host} to `{command.wire}` after {attempts} "
            f"attempt(s) of {self.reply_timeout_s:g} s"
        )
        identity = peer.identity
        if identity is not None and identity.udp_enabled is False:
            return text + (
                ": the station says its UDP interface is off; switch DIP switch DSW1.3 on "
                "and restart the station"
            )
        return text + (
            ": check the address, that the station is powered, and that its UDP interface "
            "is on (DIP switch DSW1.3)"
        )

    # Convenience

    async def report(self, host: str, report_id: int) -> Report:
        message = await self.request(host, report(report_id))
        assert isinstance(message, Report1 | Report2 | Report3 | SessionReport)
        return message

    async def identify(self, host: str) -> Report1:
        message = await self.request(host, report(1))
        assert isinstance(message, Report1)
        return message

    async def send(self, host: str, command: Command) -> Ack:
        """A write command; returns the TCH-OK (receipt only: verify in report 2)."""
        message = await self.request(host, command)
        assert isinstance(message, Ack)
        return message

    # Discovery

    async def discover(
        self, broadcast: str = "255.255.255.255", wait_s: float = 1.0
    ) -> list[FoundStation]:
        """Broadcast `i`, then identify every station that answered."""
        return await self._find([broadcast], wait_s)

    async def scan(self, network: str, wait_s: float = 1.0) -> list[FoundStation]:
        """Ask every address of a range: for networks where broadcasts do not pass."""
        net = ipaddress.IPv4Network(network, strict=False)
        if net.num_addresses > MAX_SCAN_ADDRESSES:
            raise ValueError(
                f"{network} has {net.num_addresses} addresses; scan at most {MAX_SCAN_ADDRESSES}"
            )
        hosts = list(net.hosts()) or [net.network_address]
        return await self._find([str(h) for h in hosts], wait_s)

    async def _find(self, targets: Iterable[str], wait_s: float) -> list[FoundStation]:
        # A broadcast reaches every station: keep each known one's pacing.
        busy_until = max((peer.ready_at for peer in self._peers.values()), default=0.0)
        await self.clock.sleep(busy_until - self.clock.monotonic())
        self._firmware_replies = {}
        try:
            for target in targets:
                self._send(identify().wire.encode("ascii"), target)
            await asyncio.sleep(wait_s)
            answered = sorted(self._firmware_replies, key=ipaddress.IPv4Address)
        finally:
            self._firmware_replies = None
        results = await asyncio.gather(
            *(self.identify(host) for host in answered), return_exceptions=True
        )
        return [
            FoundStation(host, result)
            for host, result in zip(answered, results, strict=True)
            if isinstance(result, Report1)
        ]
