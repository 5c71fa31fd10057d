"""What only the memory store promises: it fails loudly where SQL would misbehave."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

import pytest

from pbidentity.storage.memory import MemoryStorage

NOW = datetime(2026, 11, 28, 20, 54, 13, tzinfo=UTC)


def test_nested_transaction_fails_instead_of_deadlocking() -> None:
    """Opening a transaction inside another in the same thread raises at once."""
    storage = MemoryStorage()
    with storage.transaction(), pytest.raises(RuntimeError, match="already open"):
        storage.transaction().__enter__()


def test_transaction_cannot_be_used_after_the_block() -> None:
    """A transaction object is dead once its block has ended."""
    storage = MemoryStorage()
    with storage.transaction() as tx:
        pass
    with pytest.raises(RuntimeError, match="over"):
        tx.list_tenants()
