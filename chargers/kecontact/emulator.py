"""Stateful emulated KEBA stations for tests and the demo.

Each station owns its own address's port 7090, keeps plug/state/energy/session-log state,
follows the command rules (ranges, model capabilities, pacing, x2 cool-down)
and replies to port 7090 of the sender, as a real one does. A simulated car
draws power from the offered current; time comes from a `Clock`, so tests
and the demo run sped up. Faults can be injected per station.
"""

import asyncio
import contextlib
import errno
import random
import socket
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Network

from .commands import Command, check_supported, parse_command
from .errors import KebaError, PortBusy
from .products import Capability, ProductInfo, parse_product
from .timing import Clock, Timing

KEBA_PORT = 7090
SO_TIMESTAMPNS = 35  # Linux: kernel receive time, immune to a busy event loop
VOLTAGE_V = 230
HARDWARE_CURRENT_MA = 32000
NO_TAG = "0" * 16
NO_CLASS = "0" * 20


@dataclass(frozen=True)
class ModelSpec:
    description: str
    product: str
    firmware: str
    full_report1: bool = True  # newer firmware adds Backend, timeQ, DIP-Sw…
    single_dip_field: bool = False  # BMW: "DIP-Sw" instead of DIP-Sw1/2
    extended_report2: bool = True  # P20: no AuthON, Curr timer, Setenergy…


MODEL_SPECS = {
    "p20": ModelSpec(
        "KeContact P20 c-series",
        "KC-P20-EC240130-E00" + " " * 12,  # real P20s pad the product string
        "KEBA P20 v 2.5a3 (160613-061001)",
        full_report1=False,
        extended_report2=False,
    ),
    "p30c": ModelSpec(
        "KeContact P30 c-series", "KC-P30-EC240422-E00", "P30 v 3.10.57 (240521-093236)"
    ),
    "p30x": ModelSpec(
        "KeContact P30 x-series with RFID",
        "KC-P30-EC2404B2-M0R",
        "P30 v 1.17.3 (230912-101502)",
    ),
    "p30de": ModelSpec(
        "KeContact P30 German edition",
        "KC-P30-EC220112-000-DE",
        "P30 v 3.10.42 (220714-080112)",
    ),
    "bmw": ModelSpec(
        "BMW Wallbox Plus",
        "BMW-10-EC240522-E1R",
        "P30 v 3.10.57 (240521-093236)",
        single_dip_field=True,
    ),
}
MODELS = {name: spec.description for name, spec in MODEL_SPECS.items()}


@dataclass
class Faults:
    loss: float = 0.0  # probability that a request goes unanswered
    delay_s: float = 0.0  # real seconds before each reply
    duplicate: float = 0.0  # probability that a reply is sent twice
    garbage: float = 0.0  # probability that a reply is replaced by junk
    # Commands (by name) the station neither executes nor answers, as when
    # a datagram is lost on the way in. (`loss` drops only the reply: the
    # request was executed.)
    unanswered: set[str] = field(default_factory=set)
    # Commands (by name) the station executes but whose reply is lost.
    lose_reply: set[str] = field(default_factory=set)
    # Fields replaced in a report, by report id: a firmware bug on demand.
    report_fields: dict[int, dict[str, object]] = field(default_factory=dict)
    # Values replaced in status messages, by field ("E pres", "Max curr", ...).
    status_fields: dict[str, object] = field(default_factory=dict)
    # Restarts just before answering this request (once), as after a power dip
    # between the two reports of one poll.
    reboot_before: str | None = None
    # Hears and sends nothing, as with its network cable pulled, but keeps
    # charging; unlike `loss`, commands are not executed either.
    silent: bool = False


@dataclass
class Car:
    """A car that draws what it is offered, up to its own limits."""

    max_current_a: float = 16.0
    phases: int = 3
    battery_kwh: float = 60.0
    needed_kwh: float = 20.0  # stops drawing once this much is charged

    def __post_init__(self) -> None:
        self.charged_kwh = 0.0

    @property
    def full(self) -> bool:
        return self.charged_kwh >= self.needed_kwh


@dataclass
class SessionRecord:
    session_id: int
    start_energy: int  # 0.1 Wh, lifetime counter at start
    started_uptime: float
    started_wall: float
    energy: int = 0  # 0.1 Wh in this session
    ended_uptime: float | None = None
    ended_wall: float | None = None
    reason: int = 0
    tag: str = NO_TAG
    tag_class: str = NO_CLASS
    cut_by_reboot: bool = False  # the station forgot it: no 1xx report shows it


@dataclass
class EmulatedStation:
    host: str
    model: str
    serial: str
    clock: Clock
    timing: Timing
    faults: Faults = field(default_factory=Faults)
    dirty_json: bool = False
    udp_enabled: bool = True
    strict_source_port: bool = False  # firmware 3.10.80: only source port 7090
    auth_on: bool = False
    whitelist: set[str] = field(default_factory=set)  # empty: any card is accepted
    clock_synced: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        self.spec = MODEL_SPECS[self.model]
        self.product: ProductInfo = parse_product(self.spec.product, self.spec.firmware)
        self.rng = random.Random(self.seed if self.seed is not None else self.serial)
        self.total_energy = 0  # 0.1 Wh, survives reboots
        self.session_log: list[SessionRecord] = []  # newest first
        self.next_session_id = 1
        self.car: Car | None = None
        self.pacing_violations = 0
        self._energy_fraction = 0.0  # 0.1 Wh not yet on the counter
        self.received: list[str] = []  # every command text, for tests
        # Ground truth for tests, kept across reboots and moves: every session
        # ever (oldest first) and every command carried out, with its error.
        self.history: list[SessionRecord] = []
        self.executed: list[tuple[str, str | None]] = []
        self._sock: socket.socket | None = None
        self._last_sender: str | None = None
        self._last_arrival: float | None = None
        self._quiet_until: float = 0.0
        self._boot()
        self._last_status = self._status_fields()

    # State that a reboot resets

    def _boot(self) -> None:
        self.boot_at = self.clock.monotonic()
        self.enabled_user = True
        self.user_current_ma = 63000
        self.timer_current_ma: int | None = None  # active currtime limit
        self.pending_timer: tuple[int, float] | None = None  # (mA, due at)
        self.energy_limit = 0  # 0.1 Wh, 0 = off
        self.failsafe_timeout_s = 0
        self.failsafe_ma = 0
        self.failsafe_persist = False
        self.last_control_at = self.boot_at
        self.output = 0
        self.x2_source = 0
        self.x2_three_phases = True
        self.x2_switched_at: float | None = None
        self.display_text = ""
        self.authorized_tag: str | None = None
        self.locked = True
        self.session_log.clear()  # the 1xx reports read as zeros after a reboot
        self.session: SessionRecord | None = None
        self._advanced_at = self.boot_at
        if self.car is not None:
            self._open_session()

    @property
    def uptime_s(self) -> float:
        return self.clock.monotonic() - self.boot_at

    # What a person does at the station

    def plug_in(self, car: Car | None = None) -> None:
        self._advance()
        if self.car is not None:
            raise KebaError(f"a car is already plugged into {self.host}")
        self.car = car or Car()
        self.locked = True
        self._open_session()
        self._push_status()

    def unplug(self) -> None:
        self._advance()
        self.car = None
        self._close_session(reason=1)
        # currtime and setenergy last for one session only.
        self.timer_current_ma = None
        self.pending_timer = None
        self.energy_limit = 0
        self.authorized_tag = None
        self._push_status()

    def present_tag(self, tag: str, tag_class: str = NO_CLASS) -> bool:
        """Hold an RFID card to the reader; True when it was accepted."""
        self._advance()
        tag = tag.upper().ljust(16, "0")
        if self.whitelist and tag not in self.whitelist:
            return False
        self.authorized_tag = tag
        if self.car is not None and self.session is None:
            self._open_session()  # a new session after a stop with the card
        if self.session is not None:
            self.session.tag, self.session.tag_class = tag, tag_class.upper().ljust(20, "0")
        self._push_status()
        return True

    def reboot(self) -> None:
        self._advance()
        if self.session is not None:
            self._close_session(reason=0)
            self.history[-1].cut_by_reboot = True
        self._boot()
        if self._last_sender:
            self._send(b"started ...", self._last_sender)

    # The simulation

    def _open_session(self) -> None:
        record = SessionRecord(
            session_id=self.next_session_id,
            start_energy=self.total_energy,
            started_uptime=self.uptime_s,
            started_wall=self.clock.wall(),
        )
        self.next_session_id += 1
        self.session = record
        self.history.append(record)
        self.session_log.insert(0, record)
        del self.session_log[31:]

    def _close_session(self, reason: int) -> None:
        if self.session is not None:
            self.session.ended_uptime = self.uptime_s
            self.session.ended_wall = self.clock.wall()
            self.session.reason = reason
            self.session = None

    @property
    def authorized(self) -> bool:
        return not self.auth_on or self.authorized_tag is not None

    @property
    def enabled_sys(self) -> bool:
        return self.enabled_user and self.authorized

    def _failsafe_tripped(self, now: float) -> bool:
        timeout = self.failsafe_timeout_s
        return timeout > 0 and now - self.last_control_at > timeout

    def offered_ma(self) -> int:
        if self.car is None or not self.enabled_sys or self.session is None:
            return 0
        limit = min(HARDWARE_CURRENT_MA, self.user_current_ma)
        if self.timer_current_ma is not None:
            limit = min(limit, self.timer_current_ma)
        if self._failsafe_tripped(self.clock.monotonic()):
            limit = min(limit, self.failsafe_ma)
        return limit

    def phases(self) -> int:
        car_phases = self.car.phases if self.car else 0
        if self.x2_source == 4 and not self.x2_three_phases:
            return min(1, car_phases)
        return car_phases

    def drawn_ma(self) -> int:
        if self.car is None or self.car.full:
            return 0
        return min(self.offered_ma(), round(self.car.max_current_a * 1000))

    def power_mw(self) -> int:
        return self.drawn_ma() * VOLTAGE_V * self.phases()

    def state(self) -> int:
        if self.car is None:
            return 2 if self.enabled_user else 1
        if not self.authorized or self.session is None:
            return 1
        if not self.enabled_user:
            return 5
        return 3 if self.drawn_ma() > 0 else 2

    def plug(self) -> int:
        if self.car is None:
            return 1
        return 7 if self.locked else 5

    def _advance(self) -> None:
        """Bring energy and timers up to the clock, in steps at every event."""
        now = self.clock.monotonic()
        while self._advanced_at < now:
            step_end = min(now, self._next_event_after(self._advanced_at))
            self._charge(step_end - self._advanced_at)
            self._advanced_at = step_end
            self._fire_due_events(step_end)

    def _next_event_after(self, moment: float) -> float:
        candidates = [float("inf")]
        if self.pending_timer is not None:
            candidates.append(self.pending_timer[1])
        if self.failsafe_timeout_s and not self._failsafe_tripped(moment):
            candidates.append(self.last_control_at + self.failsafe_timeout_s + 1e-6)
        power = self.power_mw()
        if power > 0 and self.car is not None:
            wh10_per_s = power / 1000 / 3600 * 10
            left = self.car.needed_kwh * 10000 - self.car.charged_kwh * 10000
            if self.energy_limit and self.session is not None:
                left = min(left, self.energy_limit - self.session.energy)
            candidates.append(moment + max(left, 0) / wh10_per_s + 1e-6)
        return min(candidates)

    def _charge(self, seconds: float) -> None:
        power = self.power_mw()
        if seconds <= 0 or power <= 0 or self.car is None or self.session is None:
            return
        wh10 = power / 1000 * seconds / 3600 * 10
        self._energy_fraction += wh10
        whole = int(self._energy_fraction)
        self._energy_fraction -= whole
        self.session.energy += whole
        self.total_energy += whole
        self.car.charged_kwh += wh10 / 10000

    def _fire_due_events(self, now: float) -> None:
        if self.pending_timer is not None and self.pending_timer[1] <= now:
            self.timer_current_ma, self.pending_timer = self.pending_timer[0], None
        if self.energy_limit and self.session and self.session.energy >= self.energy_limit:
            # PROTOCOL.md: the station stops and disables itself like `ena 0`.
            self.enabled_user = False
            self.energy_limit = 0

    # Status messages: a P30 tells the last sender what changed.

    def _status_fields(self) -> dict[str, int]:
        return {
            "State": self.state(),
            "Plug": self.plug(),
            "Enable sys": int(self.enabled_sys),
            "Max curr": self.offered_ma(),
        }

    def _push_status(self) -> None:
        current = self._status_fields()
        changed = {k: v for k, v in current.items() if self._last_status.get(k) != v}
        self._last_status = current
        if self._last_sender is None:
            return
        if "State" in changed and current["State"] != 3 and self.session_log:
            changed["E pres"] = self.session_log[0].energy
        for key, value in changed.items():
            shown = self.faults.status_fields.get(key, value)
            self._send(f'{{"{key}": {shown}}}'.encode(), self._last_sender)

    def tick(self) -> None:
        self._advance()
        self._push_status()

    # Network

    async def bind(self) -> None:
        self._listen(_station_socket(self.host))

    def _listen(self, sock: socket.socket) -> None:
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def move_to(self, new_host: str) -> None:
        """The station gets a new address (DHCP), keeping everything else."""
        sock = _station_socket(new_host)  # first, so a failed move leaves it where it was
        self.close()
        self.host = new_host
        self._listen(sock)

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, ancillary, _flags, addr = self._sock.recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.handle(data, addr, _arrival_time(ancillary))

    def handle(self, data: bytes, addr: tuple[str, int], arrived_real: float) -> None:
        sender, port = addr
        if self.faults.silent:
            return
        if self.strict_source_port and port != KEBA_PORT:
            return
        text = data.decode("latin-1").strip()
        self.received.append(text)
        if self._violates_pacing(arrived_real):
            self.pacing_violations += 1
            return
        if not self.udp_enabled and text not in ("i", "report 1"):
            return  # DIP switch DSW1.3 off: only identification answers
        name = text.split(" ", 1)[0]
        if name in self.faults.unanswered:
            return
        if text == self.faults.reboot_before:
            self.faults.reboot_before = None
            self.reboot()
        self._advance()
        if text != "i":
            self._last_sender = sender
        reply = self._answer(text)
        self._push_status()
        if reply is not None and name not in self.faults.lose_reply:
            self._reply(reply, sender)

    def _violates_pacing(self, arrived_real: float) -> bool:
        # Measured in real time from kernel timestamps; 2 ms of slack for jitter.
        arrived = arrived_real * self.clock.speed
        previous = self._last_arrival
        self._last_arrival = arrived
        if arrived < self._quiet_until - 0.002 * self.clock.speed:
            return True
        slack = 0.002 * self.clock.speed
        return previous is not None and arrived - previous < self.timing.min_gap_s - slack

    def _reply(self, payload: bytes, sender: str) -> None:
        faults = self.faults
        if faults.loss and self.rng.random() < faults.loss:
            return
        if faults.garbage and self.rng.random() < faults.garbage:
            payload = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 40)))
        copies = 2 if faults.duplicate and self.rng.random() < faults.duplicate else 1
        for _ in range(copies):
            if faults.delay_s:
                loop = asyncio.get_running_loop()
                loop.call_later(faults.delay_s, self._send, payload, sender)
            else:
                self._send(payload, sender)

    def _send(self, payload: bytes, host: str) -> None:
        # Always to port 7090 of the sender, whatever port it sent from.
        if self._sock is not None and not self.faults.silent:
            with contextlib.suppress(OSError):
                self._sock.sendto(payload, (host, KEBA_PORT))

    # Commands

    def _answer(self, text: str) -> bytes | None:
        if text == "i":
            return f'"Firmware":"{self.spec.firmware}"\n'.encode()
        words = text.split()
        if words[:1] == ["output"] and len(words) == 2 and words[1] in set("23456789"):
            return None  # reserved values: stations stay silent
        try:
            command = parse_command(text)
            check_supported(command, self.product)
        except KebaError as exc:
            return f"TCH-ERR:{exc}\n".encode()
        if command.name == "report":
            assert command.report_id is not None
            return self._report(command.report_id)
        error = self._execute(command)
        self.executed.append((text, error))
        return b"TCH-OK :done\n" if error is None else f"TCH-ERR:{error}\n".encode()

    def _execute(self, command: Command) -> str | None:
        name, args = command.name, command.args
        now = self.clock.monotonic()
        if name in ("ena", "curr", "currtime"):
            self.last_control_at = now
        if name == "ena":
            self.enabled_user = args[0] == 1
            if not self.enabled_user and self._last_arrival is not None:
                self._quiet_until = self._last_arrival + self.timing.ena_quiet_s
        elif name == "curr":
            self.user_current_ma = int(args[0])
        elif name == "currtime":
            current, delay = int(args[0]), int(args[1])
            self.enabled_user = True
            self.pending_timer = (current, now + delay)
            if delay == 0:
                self.timer_current_ma, self.pending_timer = current, None
        elif name == "setenergy":
            self.energy_limit = int(args[0])
        elif name == "output":
            self.output = int(args[0])
        elif name == "failsafe":
            self.failsafe_timeout_s, self.failsafe_ma = int(args[0]), int(args[1])
            self.failsafe_persist = args[2] == 1
        elif name == "start":
            self.present_tag(str(args[0]), str(args[1]))
        elif name == "stop":
            return self._stop(str(args[0]))
        elif name == "display":
            self.display_text = str(command.args[4]).replace("$", " ")
        elif name == "unlock":
            if self.state() == 3:
                return "unlock not allowed while charging"
            self.locked = False
        elif name == "setdatetime":
            self.clock_synced = True
        elif name == "x2src":
            self.x2_source = int(args[0])
        elif name == "x2":
            return self._switch_phases(args[0] == 1, now)
        return None

    def _stop(self, tag: str) -> str | None:
        if self.session is None or self.authorized_tag is None:
            return "nothing to stop"
        if tag != self.authorized_tag:
            return "tag did not start this session"
        self.authorized_tag = None
        self._close_session(reason=10)
        return None

    def _switch_phases(self, three: bool, now: float) -> str | None:
        if self.x2_source != 4:
            return "X2 : source is not UDP (send x2src 4 first)"
        if self.x2_switched_at is not None and now - self.x2_switched_at < (
            self.timing.x2_cooldown_s
        ):
            return "X2 : not allowed now"
        self.x2_three_phases, self.x2_switched_at = three, now
        return None

    # Reports

    def _report(self, report_id: int) -> bytes:
        if report_id == 1:
            fields = self._report1()
        elif report_id == 2:
            fields = self._report2()
        elif report_id == 3:
            fields = self._report3()
        else:
            fields = self._session_report(report_id)
        return self._render(fields | self.faults.report_fields.get(report_id, {}))

    def _common(self) -> dict[str, object]:
        return {"Serial": self.serial, "Sec": int(self.uptime_s)}

    def _report1(self) -> dict[str, object]:
        product = self.spec.product + ("   " if self.dirty_json else "")
        fields: dict[str, object] = {
            "ID": "1",
            "Product": product,
            "Serial": self.serial,
            "Firmware": self.spec.firmware,
        }
        if not self.spec.full_report1:
            return fields
        dip1 = 0x25 if self.udp_enabled else 0x05
        fields |= {"COM-module": 0, "Backend": 0, "timeQ": 3 if self.clock_synced else 0}
        fields["setBoot"] = 0
        if self.spec.single_dip_field:
            fields["DIP-Sw"] = f"0x{dip1:02x}"
        else:
            fields |= {"DIP-Sw1": f"0x{dip1:02x}", "DIP-Sw2": "0x02"}
        fields["Sec"] = int(self.uptime_s)
        return fields

    def _report2(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "ID": "2",
            "State": self.state(),
            "Error1": 0,
            "Error2": 0,
            "Plug": self.plug(),
        }
        if self.spec.extended_report2:
            fields |= {
                "AuthON": int(self.auth_on),
                "Authreq": int(self.car is not None and not self.authorized),
            }
        offered = self.offered_ma()
        fields |= {
            "Enable sys": int(self.enabled_sys),
            "Enable user": int(self.enabled_user),
            "Max curr": offered,
            "Max curr %": round(offered / 600 * 10) if offered else 1000,
            "Curr HW": HARDWARE_CURRENT_MA,
            "Curr user": self.user_current_ma,
            "Curr FS": self.failsafe_ma,
            "Tmo FS": self.failsafe_timeout_s,
        }
        if self.spec.extended_report2:
            timer_ma, left = 0, 0
            if self.pending_timer is not None:
                timer_ma = self.pending_timer[0]
                left = max(0, round(self.pending_timer[1] - self.clock.monotonic()))
            elif self.timer_current_ma is not None:
                timer_ma = self.timer_current_ma
            fields |= {"Curr timer": timer_ma, "Tmo CT": left, "Setenergy": self.energy_limit}
        fields |= {"Output": self.output, "Input": 0}
        if self.product.can(Capability.PHASE_SWITCH):
            fields["X2 phaseSwitch source"] = self.x2_source
            fields["X2 phaseSwitch"] = int(self.x2_three_phases)
        return fields | self._common()

    def _report3(self) -> dict[str, object]:
        metered = self.product.can(Capability.METER)
        drawn = self.drawn_ma() if metered else 0
        phases = self.phases() if metered else 0
        currents = [drawn if n < phases else 0 for n in range(3)]
        energy = self.session_log[0].energy if self.session_log else 0
        return {
            "ID": "3",
            "U1": VOLTAGE_V if metered else 0,
            "U2": VOLTAGE_V if metered and phases >= 2 else 0,
            "U3": VOLTAGE_V if metered and phases >= 3 else 0,
            "I1": currents[0],
            "I2": currents[1],
            "I3": currents[2],
            "P": self.power_mw() if metered else 0,
            "PF": 1000 if drawn else 0,
            "E pres": energy if metered else 0,
            "E total": self.total_energy if metered else 0,
        } | self._common()

    def _session_report(self, report_id: int) -> dict[str, object]:
        index = report_id - 100
        fields: dict[str, object] = {"ID": str(report_id)}
        record = self.session_log[index] if index < len(self.session_log) else None
        if record is None:
            zeros = ["Session ID", "Curr HW", "E start", "E pres", "started[s]", "ended[s]"]
            fields |= dict.fromkeys(zeros, 0)
            fields |= {"started": "", "ended": "", "reason": 0, "timeQ": 0}
            fields |= {"RFID tag": NO_TAG, "RFID class": NO_CLASS}
            return fields | self._common()
        fields |= {
            "Session ID": record.session_id,
            "Curr HW": HARDWARE_CURRENT_MA,
            "E start": record.start_energy,
            "E pres": record.energy,
            "started[s]": self._session_seconds(record.started_wall, record.started_uptime),
            "ended[s]": self._session_seconds(record.ended_wall, record.ended_uptime),
            "started": self._session_text(record.started_wall),
            "ended": self._session_text(record.ended_wall),
            "reason": record.reason,
            "timeQ": 3 if self.clock_synced else 0,
            "RFID tag": record.tag,
            "RFID class": record.tag_class,
        }
        return fields | self._common()

    def _session_seconds(self, wall: float | None, uptime: float | None) -> int:
        if wall is None or uptime is None:
            return 0
        # Real stations send epoch seconds here (the guide says uptime).
        return int(wall) if self.clock_synced else int(uptime)

    def _session_text(self, wall: float | None) -> str:
        if wall is None or not self.clock_synced:
            return ""
        return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S.000")

    def _render(self, fields: dict[str, object]) -> bytes:
        lines = []
        for key, value in fields.items():
            shown = f'"{value}"' if isinstance(value, str) else str(value)
            lines.append(f'"{key}": {shown}')
        if self.dirty_json:
            # Old firmware: a trailing comma before the closing brace.
            return ("{\n" + ",\n".join(lines) + ",\n}\n").encode()
        return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def _station_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, KEBA_PORT))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortBusy(
                f"{host}:{KEBA_PORT} is already in use by another program (another emulator?); "
                "stop it or choose another address"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise PortBusy(
                f"{host} is not an address of this machine; choose a loopback address "
                "such as 127.0.0.2"
            ) from None
        raise PortBusy(f"cannot emulate a station on {host}:{KEBA_PORT}: {exc}") from None
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return sock


def _arrival_time(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("@qq", data[:16])
            return seconds + nanoseconds / 1e9
    return time.time()


def network_broadcast(host: str) -> str:
    """The broadcast address of `host`'s /24: where its fleet listens by convention."""
    return str(IPv4Network(f"{host}/24", strict=False).broadcast_address)


class Fleet:
    """Many emulated stations in one event loop, plus a broadcast listener.

    `broadcast` is the address whose port 7090 hears discovery (`i`) for all
    the fleet's stations, e.g. 127.0.0.255 for stations on 127.0.0.x (see
    `network_broadcast`); None leaves discovery unheard, so stations are found
    only by a scan. It is bound exclusively: two fleets listening on one
    address would each hear only some of the broadcasts.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        timing: Timing | None = None,
        *,
        broadcast: str | None = None,
    ) -> None:
        self.clock = clock or Clock()
        self.timing = timing or Timing()
        self.broadcast = broadcast
        self.stations: dict[str, EmulatedStation] = {}
        self._broadcast: socket.socket | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def add(
        self,
        host: str,
        model: str = "p30c",
        *,
        serial: str | None = None,
        faults: Faults | None = None,
        **options: object,
    ) -> EmulatedStation:
        if model not in MODEL_SPECS:
            raise KebaError(f"unknown station model {model!r}; choose one of {', '.join(MODELS)}")
        station = EmulatedStation(
            host=host,
            model=model,
            serial=serial or f"{90000000 + int.from_bytes(socket.inet_aton(host)[1:], 'big')}",
            clock=self.clock,
            timing=self.timing,
            faults=faults or Faults(),
            **options,  # type: ignore[arg-type]
        )
        self._listen_for_broadcasts()
        await station.bind()
        self.stations[host] = station
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        return station

    def __getitem__(self, host: str) -> EmulatedStation:
        return self.stations[host]

    def _listen_for_broadcasts(self) -> None:
        if self._broadcast is not None or self.broadcast is None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.broadcast, KEBA_PORT))
        except OSError as exc:
            sock.close()
            raise PortBusy(
                f"cannot listen for discovery on {self.broadcast}:{KEBA_PORT}: "
                f"{exc.strerror or exc}; give each emulator its own broadcast address "
                "(e.g. 127.0.1.255 for stations on 127.0.1.x)"
            ) from None
        sock.setblocking(False)
        self._broadcast = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._broadcast_readable)

    def _broadcast_readable(self) -> None:
        assert self._broadcast is not None
        while True:
            try:
                data, addr = self._broadcast.recvfrom(2048)
            except (BlockingIOError, InterruptedError, OSError):
                return
            if data.strip() == b"i":
                for station in list(self.stations.values()):
                    station.handle(data, addr, time.time())

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            for station in list(self.stations.values()):
                station.tick()

    async def move(self, old_host: str, new_host: str) -> EmulatedStation:
        station = self.stations[old_host]
        await station.move_to(new_host)
        self.stations[new_host] = self.stations.pop(old_host)
        return station

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for station in self.stations.values():
            station.close()
        self.stations.clear()
        if self._broadcast is not None:
            asyncio.get_running_loop().remove_reader(self._broadcast.fileno())
            self._broadcast.close()
            self._broadcast = None

    async def __aenter__(self) -> "Fleet":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
