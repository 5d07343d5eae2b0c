"""Query counts of pages, for tests that a page's cost does not grow with the data."""

from collections.abc import Callable, Sequence

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chargers.models import Site, Station


def queries_for(client: Client, url: str) -> int:
    """How many queries one successful GET of `url` takes."""
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def queries_at_sizes(
    client: Client, url: str, fill: Callable[[int], object], sizes: Sequence[int] = (4, 40)
) -> list[int]:
    """queries_for `url` with each number of stations, made afresh by `fill`."""
    counts = []
    for total in sizes:
        Station.objects.all().delete()
        Site.objects.all().delete()
        fill(total)
        counts.append(queries_for(client, url))
    return counts
