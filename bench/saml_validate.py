"""Time validating one signed SAML response: python3-saml's own path against ``verify_response``.

What is measured
----------------
One SAML response, as an IdP posts it to the ACS (a signed assertion with
RSA-SHA256, three attributes, about 4.5 KB of XML), made once by the test IdP
(``tests/saml/idp.py``). It is then validated, in the same process,
alternately by:

* *python3-saml*: ``OneLogin_Saml2_Response(settings, value).is_valid(...)``
  with settings equivalent to pbidentity's (strict, signed assertions
  required, deprecated algorithms refused, the same SP and IdP), the settings
  object built once, which is python3-saml's best case (an app that builds
  ``OneLogin_Saml2_Auth`` per request also pays for the settings each time:
  the ``python3-saml, settings per call`` row);
* *verify_response*: pbidentity's hardened verification, which reuses
  python3-saml's parser and signature-wrapping checks, parses the protocol
  XSD once per thread instead of on every call, and adds its own checks.

Each call is timed on its own with :func:`time.perf_counter_ns`; the
implementations take turns call by call, so both see the same machine load.
After a warm-up (which also parses the schema and loads the keys once), the
script prints the median, the 99th percentile and the mean of each, and the
ratio of the medians. The target is a median of at most 1.0 ms for
``verify_response``. Every call's result is checked: a run where a validation
failed stops with exit status 1, since timing a refusal would be meaningless.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

# The test IdP lives with the tests; the benchmark signs its response with it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import conditions
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from tests.saml.idp import TestIdp

from pbidentity.saml import ServiceProvider
from pbidentity.saml import settings_dict
from pbidentity.saml import verify_response

TARGET_MS = 1.0
REQUEST_ID = "_bench-request-1"
SP = ServiceProvider(
    entity_id="https://app.example/saml/acme/metadata",
    acs_url="https://app.example/saml/acme/acs",
    metadata_url="https://app.example/saml/acme/metadata",
    login_url="https://app.example/saml/acme/login",
)
#: The request python3-saml derives the ACS URL from: https://app.example/saml/acme/acs.
REQUEST_DATA = {
    "https": "on",
    "http_host": "app.example",
    "server_port": "443",
    "script_name": "/saml/acme/acs",
}


def _percentile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1e6


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table; 1 if a validation failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=3000, help="timed calls of each")
    parser.add_argument("--warmup", type=int, default=300, help="untimed calls of each first")
    args = parser.parse_args(argv)

    test_idp = TestIdp()
    idp = test_idp.identity_provider()
    now = datetime.now(UTC)
    # Valid for an hour: python3-saml checks the times against the wall clock.
    value = test_idp.response(
        sp=SP,
        name_id="ada@example.com",
        in_response_to=REQUEST_ID,
        now=now,
        not_on_or_after=now + timedelta(hours=1),
        subject_not_on_or_after=now + timedelta(hours=1),
    )
    settings = OneLogin_Saml2_Settings(settings_dict(SP, idp))

    def upstream() -> bool:
        response = OneLogin_Saml2_Response(settings, value)
        return bool(response.is_valid(REQUEST_DATA, REQUEST_ID))

    def upstream_settings() -> bool:
        response = OneLogin_Saml2_Response(OneLogin_Saml2_Settings(settings_dict(SP, idp)), value)
        return bool(response.is_valid(REQUEST_DATA, REQUEST_ID))

    def ours() -> bool:
        assertion = verify_response(
            value, sp=SP, idp=idp, request_id=REQUEST_ID, now=datetime.now(UTC)
        )
        return assertion.name_id == "ada@example.com"

    contenders: dict[str, Callable[[], bool]] = {
        "python3-saml is_valid": upstream,
        "python3-saml, settings per call": upstream_settings,
        "verify_response": ours,
    }
    for name, call in contenders.items():
        for _ in range(args.warmup):
            if not call():
                print(f"{name}: the response was refused; nothing to time")
                return 1
    timings: dict[str, list[int]] = {name: [] for name in contenders}
    for _ in range(args.iterations):
        for name, call in contenders.items():
            start = time.perf_counter_ns()
            ok = call()
            timings[name].append(time.perf_counter_ns() - start)
            if not ok:
                print(f"{name}: the response was refused during the run")
                return 1

    print(conditions.machine())
    print(f"one signed response, {len(value) * 3 // 4} bytes of XML, {args.iterations} calls each")
    print(f"{'':34} {'median ms':>10} {'p99 ms':>8} {'mean ms':>8}")
    medians = {}
    for name, values in timings.items():
        medians[name] = statistics.median(values) / 1e6
        print(
            f"{name:34} {medians[name]:10.3f} {_percentile(values, 0.99):8.3f} "
            f"{statistics.fmean(values) / 1e6:8.3f}"
        )
    ours_ms = medians["verify_response"]
    for name in ("python3-saml is_valid", "python3-saml, settings per call"):
        print(f"verify_response takes {ours_ms / medians[name]:.2f}x the median of {name}")
    verdict = "meets" if ours_ms <= TARGET_MS else "MISSES"
    print(f"verify_response median {ours_ms:.3f} ms: {verdict} the {TARGET_MS:.1f} ms target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
