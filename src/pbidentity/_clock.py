"""The clock and id factory pbidentity uses unless the host app injects its own.

Every component that needs the time or a new id takes them as callables, so
tests control both without patching or time-travel libraries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC
from datetime import datetime

Clock = Callable[[], datetime]
IdFactory = Callable[[], str]


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A new random resource id (a UUID4 in its canonical text form)."""
    return str(uuid.uuid4())
