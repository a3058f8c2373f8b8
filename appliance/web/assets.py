"""Static files with versioned URLs, so browsers keep them instead of asking on every page.

Templates write ``{{ static_url('app.css') }}``, which gives ``/static/app.css?v=<hash of the content>``.
A response to that exact URL may be kept for a year (``immutable``): when the file changes, so does
its URL. Any other request for a static file (no ``v``, or an old one) is served with ``no-cache``, so
the browser checks it again (StaticFiles answers with an ETag, and 304 when nothing changed).
HTML pages keep ``no-store`` from SecurityHeaders.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import parse_qs

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class StaticAssets(StaticFiles):
    """StaticFiles mounted at ``prefix`` that knows each file's version (a short hash of its content).

    The hash is kept with the file's size and modification time and computed again when they change,
    so a file edited while the server runs gets a new URL."""

    def __init__(self, directory: Path, *, prefix: str = "/static") -> None:
        super().__init__(directory=str(directory))
        self.root = directory.resolve()
        self.prefix = prefix.rstrip("/")
        self._versions: dict[str, tuple[int, int, str]] = {}

    def version(self, name: str) -> str | None:
        """A short hash of the file's content; None when there is no such file under the directory."""
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        stat = path.stat()
        known = self._versions.get(name)
        if known is not None and known[:2] == (stat.st_size, stat.st_mtime_ns):
            return known[2]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self._versions[name] = (stat.st_size, stat.st_mtime_ns, digest)
        return digest

    def url(self, name: str) -> str:
        """'/static/app.css?v=3f2a...'; a file that does not exist is a mistake in the template."""
        version = self.version(name)
        if version is None:
            raise LookupError(f"no static file {name!r} in {self.root}")
        return f"{self.prefix}/{name}?v={version}"

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            asked = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("v")
            current = self.version(path)
            fresh = current is not None and asked == [current]
            response.headers["Cache-Control"] = IMMUTABLE if fresh else REVALIDATE
        return response
