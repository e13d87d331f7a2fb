"""The reviewers' console at `/review`: four static files (`index.html`, `app.js`,
`dashboard.js`, `style.css`) that talk only to `/graphql`, with the reviewer's own API key.
The review queue and a case are at `/review#/`, the merchant's points dashboard at
`/review#/dashboard`: one page, one sign-in.

Rule this module enforces: every console response carries a Content-Security-Policy that
allows nothing but this origin's own files and its own `/graphql` (no inline script or style,
no frames, no other origin), so that data shown in the page cannot become code even if a
bug let it into the markup. The files are read once, when the routes are made."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}
# path under /review → (file in this package, media type)
CONSOLE_FILES = {
    "": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


def console_routes(prefix: str = "/review") -> list[BaseRoute]:
    """A GET route for each of the console's files under `prefix`."""
    folder = files(__name__)
    routes: list[BaseRoute] = []
    for path, (name, media_type) in CONSOLE_FILES.items():
        content = folder.joinpath(name).read_bytes()
        routes.append(Route(prefix + path, _serving(content, media_type)))
    return routes


def _serving(content: bytes, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return Response(content, media_type=media_type, headers=SECURITY_HEADERS)

    return serve
