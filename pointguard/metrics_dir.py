"""The folder where the processes of one machine pool their metric values.

`pointguard serve --workers N` answers from N processes, and `pointguard worker` and `dispatch`
may run beside it. prometheus_client's multiprocess mode has each process write its counters
and histograms to memory-mapped files of its own in one folder, and `/metrics` sums the files
(`metrics.py` says why this mode). The client picks the mode once, when it is imported, from
`PROMETHEUS_MULTIPROC_DIR`; so the commands call `share_metrics` first thing, and it refuses
to run once the client is imported, when the values would silently stay private.

`serve` cleans the folder as it starts: the files of processes that no longer run go (their
totals restart from zero, which Prometheus reads as a counter reset, as after any restart),
and the files of live ones (a `pointguard worker` started before) stay. While it runs, the
files of processes that exit stay too, so that no counter goes down.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pointguard.db import make_private_dir

ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics(directory: Path, *, clean: bool) -> None:
    """Make this process, and the processes it starts, keep their metrics in `directory`."""
    if "prometheus_client" in sys.modules and os.environ.get(ENV) != str(directory):
        raise RuntimeError(
            "share_metrics must run before prometheus_client is imported: this process's"
            " metrics would stay in its memory, out of the shared folder"
        )
    make_private_dir(directory)  # in the data folder, which only its owner may read
    if clean:
        for file in directory.glob("*.db"):
            if not _running(_pid_of(file)):
                file.unlink(missing_ok=True)
    os.environ[ENV] = str(directory)


def _pid_of(file: Path) -> int | None:
    """The process id in a multiprocess file's name (`counter_1234.db`), if it has one."""
    tail = file.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _running(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        return True
    return True
