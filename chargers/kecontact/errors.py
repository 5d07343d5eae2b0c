"""The protocol library's errors: one base class, a few precise kinds."""


class KebaError(Exception):
    """Anything that went wrong talking to a KEBA station."""

    def __init__(self, text: str = "", summary: str | None = None) -> None:
        super().__init__(text)
        # The text without what varies from one occurrence to the next (a
        # value), so that a problem repeated with other values is stored once.
        self.summary = text if summary is None else summary


class Timeout(KebaError):
    """The station did not answer in time, after the allowed retries."""


class Refused(KebaError):
    """The station answered TCH-ERR, or the request broke a pacing rule."""


class Malformed(KebaError):
    """A datagram that is not a valid KEBA message."""


class ImpossibleValue(Malformed):
    """A field holds a value no KEBA station reports (a firmware or network fault)."""

    def __init__(self, text: str = "", summary: str | None = None, field: str = "") -> None:
        super().__init__(text, summary)
        self.field = field  # as the guide spells it, e.g. "E pres"


class InvalidValue(KebaError, ValueError):
    """A command argument outside what the protocol allows."""


class Unsupported(KebaError):
    """The station model cannot do what was asked."""


class PortBusy(KebaError):
    """Another program already owns UDP port 7090 on the bind address."""


class WrongStation(KebaError):
    """A reply carried another station's serial: the address changed hands."""
