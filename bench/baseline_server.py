"""Serving a benchmark's baseline app as `pointguard serve` serves PointGuard (the same uvicorn
settings and socket, `pointguard.serving`), so the two differ only in the app. Imported by name
as a sibling of the bench scripts."""

from __future__ import annotations

import argparse

import uvicorn

from pointguard import serving


def serve_baseline(factory: str, description: str) -> None:
    """Serve the app `factory` (`module:function`) with the options given on the command line
    (--host, --port, --workers) until stopped."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args()
    serving.run(
        uvicorn.Config(
            factory,
            factory=True,
            workers=arguments.workers,
            host=arguments.host,
            port=arguments.port,
            access_log=False,
            log_level="warning",
        )
    )
