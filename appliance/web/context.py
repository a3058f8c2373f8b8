"""What every route needs, built once by create_app: the context, and the exceptions routes raise for the
app's handlers (sign in, forbidden, stale form). Routes import this module, never the app itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker

from appliance import db, pipeline
from appliance.capture import Camera, Scanner
from appliance.settings import Settings
from appliance.web.auth import LoginThrottle
from appliance.web.jobs import Jobs

SESSION_COOKIE = "sid"
PRELOGIN_COOKIE = "pre"


class NeedLogin(Exception):
    """Raised by the `officer` dependency; answered with a redirect to the sign-in page."""

    def __init__(self, expired: bool = False) -> None:
        super().__init__("sign in")
        self.expired = expired


class NeedPasswordChange(Exception):
    """Raised by the `officer` dependency while the password is a temporary one (a supervisor's reset)."""


class Forbidden(Exception):
    """The page needs the supervisor role."""


class BadCsrf(Exception):
    """A form came without the session's CSRF token."""


@dataclass
class Ctx:
    """Everything the routes need, built once in create_app."""

    settings: Settings
    factory: sessionmaker[Session]
    templates: Jinja2Templates
    jobs: Jobs
    throttle: LoginThrottle
    scanner: Scanner | None
    camera: Camera | None
    secure_cookies: bool
    idle: timedelta
    cache_dir: Path
    store: pipeline.Storage

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with db.transaction(self.factory) as session:
            yield session
