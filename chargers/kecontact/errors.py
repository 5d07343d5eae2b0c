"""The protocol library's errors: one base class, a few precise kinds."""


class KebaError(Exception):
    """Anything that went wrong talking to a KEBA station."""


class Timeout(KebaError):
    """The station did not answer in time, after the allowed retries."""


class Refused(KebaError):
    """The station answered TCH-ERR, or the request broke a pacing rule."""


class Malformed(KebaError):
    """A datagram that is not a valid KEBA message."""


class InvalidValue(KebaError, ValueError):
    """A command argument outside what the protocol allows."""


class Unsupported(KebaError):
    """The station model cannot do what was asked."""


class PortBusy(KebaError):
    """Another program already owns UDP port 7090 on the bind address."""


class WrongStation(KebaError):
    """A reply carried another station's serial: the address changed hands."""
