"""The gateway: the one owner of UDP port 7090, polling stations into the database.

`core.Gateway` keeps one `worker.StationWorker` per station it owns; each worker
polls its station, keeps sessions in step with the station's own log and runs
its command rows. The synchronous database steps sit beside them in
`stations`, `sessions` and `commands`, and tests can call them directly.
"""

from chargers.gateway.core import Gateway, GatewaySettings
from chargers.gateway.stations import describe

__all__ = ["Gateway", "GatewaySettings", "describe"]
