"""Time is an input: no module but `pointguard/clock.py` reads the wall clock.

A rule that reads the date itself tells a different story on another day; CI's shifted clocks
(`.ci/run`, faketime) catch that in the calendar tests, and this catches it at the source, in
code no test happens to run on a telling date. Durations (`time.monotonic`,
`time.perf_counter`) are not dates and are allowed.
"""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pointguard"
WALL_CLOCK_READS = re.compile(
    r"\b(datetime\.now|datetime\.utcnow|datetime\.today|date\.today|time\.time)\s*\("
)


def test_only_the_clock_module_reads_the_wall_clock():
    readers = [
        f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "clock.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if WALL_CLOCK_READS.search(line)
    ]
    assert readers == [], "read the time from pointguard.clock instead:\n" + "\n".join(readers)
