"""Per-tenant rate limiting: 429 with an integer Retry-After and a SCIM Error body."""

from __future__ import annotations

import time

import pytest

from pbidentity.admin import Admin
from pbidentity.http import Request
from pbidentity.scim import RateLimit
from pbidentity.scim import ScimConfig
from pbidentity.scim import ScimService
from pbidentity.scim._limits import RateLimiter
from pbidentity.storage import Storage
from tests.conftest import Workspace
from tests.scim.helpers import assert_error
from tests.scim.helpers import user


@pytest.fixture
def scim_config() -> ScimConfig:
    """Two requests per second per tenant, no burst beyond that."""
    return ScimConfig(rate_limit=RateLimit(rate=2, burst=2))


def test_over_the_limit_is_429_with_retry_after(acme: Workspace, globex: Workspace) -> None:
    """The third request in a second is refused; another tenant has its own bucket."""
    assert acme.client.get("/Users").status_code == 200
    assert acme.client.post("/Users", json=user("jane@example.com")).status_code == 201
    refused = acme.client.get("/Users")
    detail = assert_error(refused, 429)
    assert "'acme'" in detail
    assert refused.headers["retry-after"].isdigit()
    assert int(refused.headers["retry-after"]) >= 1
    written = acme.client.post("/Users", json=user("bob@example.com"))
    assert_error(written, 429)
    assert globex.client.get("/Users").status_code == 200
    # A second later the bucket has refilled; the refused write left nothing.
    time.sleep(1.1)
    listed = acme.client.get("/Users").json()
    assert [r["userName"] for r in listed["Resources"]] == ["jane@example.com"]


def test_limits_are_off_by_default(admin: Admin, storage: Storage) -> None:
    """Without a rate limit, a burst is served whole."""
    assert ScimConfig().rate_limit is None
    admin.create_tenant("initech")
    admin.set_scim_enabled("initech", True)
    secret = admin.create_token("initech", "okta").secret
    service = ScimService(storage)
    request = Request(
        method="GET",
        path="/Users",
        base_url="https://app.example.com/scim/v2",
        headers=(("authorization", f"Bearer {secret}"),),
    )
    assert {service.handle(request).status for _ in range(50)} == {200}


def test_the_bucket_refills_at_the_rate() -> None:
    """A token bucket: burst, then one request per 1/rate seconds, Retry-After rounded up."""
    clock = [100.0]
    limiter = RateLimiter(RateLimit(rate=0.5, burst=2), now=lambda: clock[0])
    assert limiter.acquire("t1") == 0
    assert limiter.acquire("t1") == 0
    assert limiter.acquire("t1") == 2
    assert limiter.acquire("t2") == 0
    clock[0] += 1.0
    assert limiter.acquire("t1") == 1
    clock[0] += 1.0
    assert limiter.acquire("t1") == 0
    assert limiter.acquire("t1") == 2


def test_a_rate_must_be_positive() -> None:
    """A zero or negative rate is a configuration mistake, said at once."""
    with pytest.raises(ValueError, match="rate"):
        RateLimit(rate=0)


def test_retry_after_is_rounded_up_never_down() -> None:
    """A wait of 2.5 s is announced as 3 s: a client that waits what it is told is then served."""
    clock = [0.0]
    limiter = RateLimiter(RateLimit(rate=0.4, burst=1), now=lambda: clock[0])
    assert limiter.acquire("t1") == 0
    wait = limiter.acquire("t1")
    assert wait == 3
    clock[0] += wait
    assert limiter.acquire("t1") == 0
    clock[0] += 2.0
    # 0.8 of a request has refilled: the remaining 0.5 s still means "retry in 1 s".
    assert limiter.acquire("t1") == 1
