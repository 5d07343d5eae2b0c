"""Issue 7's proof as a table: every fault scenario, what the records got right and wrong.

Each scenario runs the real gateway as a child process over its own throwaway
SQLite database (a temporary KEBAWEB_DATA_DIR) and emulated stations on this
run's loopback range; see tests/fault_scenarios.py.

    .venv/bin/python bench/faults.py [--details] [NAME-FRAGMENT ...]
"""

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Nothing here may touch the user's own data, even by accident.
os.environ["KEBAWEB_DATA_DIR"] = tempfile.mkdtemp(prefix="kebaweb-bench-faults-")

from tests.fault_scenarios import SCENARIOS, Result

HEADER = (
    "scenario",
    "sessions exp",
    "found",
    "wrong",
    "commands exp",
    "done once",
    "stuck",
    "other",
)


def row(result: Result) -> tuple[str, ...]:
    if result.reference:
        return (result.name, "-", "-", "-", "-", "-", "-", f"see {result.reference}")
    return (
        result.name,
        str(result.sessions_expected),
        str(result.sessions_found),
        str(len(result.sessions_wrong)),
        str(result.commands_expected),
        str(result.commands_done_once),
        str(len(result.commands_stuck)),
        str(len(result.other_wrong)),
    )


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = []
    for n, cells in enumerate(rows):
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
        lines.append("  ".join([first, *rest, cells[-1]]))
        if n == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


async def main(fragments: list[str], details: bool) -> int:
    results = []
    for scenario in SCENARIOS:
        if fragments and not any(f in scenario.__name__ for f in fragments):
            continue
        began = time.monotonic()
        try:
            result = await scenario()
        except Exception as exc:  # one broken scenario must not hide the others
            result = Result(scenario.__name__, other_wrong=[f"the scenario crashed: {exc!r}"])
        results.append(result)
        took = time.monotonic() - began
        print(f"{result.name}: {'ok' if result.ok else 'WRONG'} ({took:.0f} s)", file=sys.stderr)
    played = [r for r in results if not r.reference]
    totals = (
        "total",
        str(sum(r.sessions_expected for r in played)),
        str(sum(r.sessions_found for r in played)),
        str(sum(len(r.sessions_wrong) for r in played)),
        str(sum(r.commands_expected for r in played)),
        str(sum(r.commands_done_once for r in played)),
        str(sum(len(r.commands_stuck) for r in played)),
        str(sum(len(r.other_wrong) for r in played)),
    )
    print(table([HEADER, *(row(r) for r in results), totals]))
    if details:
        for result in played:
            if not result.ok:
                print("\n" + result.report())
    return 0 if all(r.ok for r in played) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fragments", nargs="*", help="run only scenarios whose name has one")
    parser.add_argument("--details", action="store_true", help="list what was wrong")
    options = parser.parse_args()
    sys.exit(asyncio.run(main(options.fragments, options.details)))
