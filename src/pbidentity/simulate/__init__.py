"""Replay an identity provider's SCIM provisioning conversation against any SCIM server.

``pbidentity simulate okta-custom --url https://app.example/scim/v2 --token T``
plays what Okta, Microsoft Entra ID, OneLogin or JumpCloud send when an admin
connects an app and provisions people (the requests, headers and body shapes
each really uses) and checks every answer the way that IdP would. It prints
one line per step::

    PASS push new users: look up, then create
    FAIL deactivate a user: expected active false (got true); PATCH /scim/v2/Users/42 ...
    SKIP read back the role the IdP sent: no role attribute: GET /Schemas answered 404

then ``N passed, M failed``. A failed step makes the run fail; a skipped one
(the server has no role attribute, or an earlier step it needs failed) does
not. The run works on the standard library alone, names everything it creates
``sim-<run id>-...`` so that runs never collide, and leaves users deactivated
or deleted as the IdP would.

It changes data on the server: point it at a test tenant, not a customer's.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from collections.abc import Mapping
from typing import Literal
from typing import TextIO

import attrs

from pbidentity.exceptions import InputError
from pbidentity.simulate._checks import Failure
from pbidentity.simulate._checks import Skip
from pbidentity.simulate._http import Client
from pbidentity.simulate._http import TransportError
from pbidentity.simulate._http import Unreachable
from pbidentity.simulate._http import parse_base_url
from pbidentity.simulate._profiles import CONVERSATIONS
from pbidentity.simulate._profiles import MIN_USERS
from pbidentity.simulate._profiles import Conversation

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_USERS",
    "PROFILES",
    "Outcome",
    "SimulationResult",
    "StepResult",
    "run",
    "step_names",
]

#: Seconds to wait for each answer: Okta's limit, the longest of the IdPs'.
DEFAULT_TIMEOUT = 60.0
#: How many users a run pushes unless told otherwise.
DEFAULT_USERS = 5

#: The profiles, by name, with what each one plays.
PROFILES: Mapping[str, str] = {name: c.description for name, c in CONVERSATIONS.items()}

Outcome = Literal["PASS", "FAIL", "SKIP"]


@attrs.frozen
class StepResult:
    """How one step went, and why when it did not pass."""

    name: str
    outcome: Outcome
    reason: str = ""

    def line(self) -> str:
        """``PASS name``, ``FAIL name: reason`` or ``SKIP name: reason``."""
        return f"{self.outcome} {self.name}" + (f": {self.reason}" if self.reason else "")


@attrs.frozen
class SimulationResult:
    """The outcome of a run: every step's result, in order."""

    profile: str
    run_id: str
    steps: tuple[StepResult, ...]
    #: How many requests were sent.
    requests: int
    #: Why the run stopped before its last step (the server could not be reached), if it did.
    stopped: str | None = None

    @property
    def passed(self) -> int:
        """How many steps passed."""
        return self._count("PASS")

    @property
    def failed(self) -> int:
        """How many steps failed."""
        return self._count("FAIL")

    @property
    def skipped(self) -> int:
        """How many steps did not apply."""
        return self._count("SKIP")

    @property
    def ok(self) -> bool:
        """No step failed."""
        return self.failed == 0

    @property
    def exit_status(self) -> int:
        """0 when no step failed, 1 otherwise."""
        return 0 if self.ok else 1

    def summary(self) -> str:
        """``N passed, M failed``."""
        return f"{self.passed} passed, {self.failed} failed"

    def step(self, name: str) -> StepResult:
        """The result of the step called ``name``.

        :raises KeyError: when the run had no such step.
        """
        for result in self.steps:
            if result.name == name:
                return result
        raise KeyError(name)

    def _count(self, outcome: Outcome) -> int:
        return sum(1 for step in self.steps if step.outcome == outcome)


def step_names(profile: str) -> list[str]:
    """The names of a profile's steps, in order, without sending anything.

    :raises InputError: for an unknown profile.
    """
    conversation = _conversation_class(profile)
    endpoint = parse_base_url("http://localhost/")
    client = Client(endpoint, "", headers={}, content_type="", timeout=1.0)
    return [
        step.name
        for step in conversation(
            client, users=MIN_USERS, run_id="0", progress=lambda _: None
        ).steps()
    ]


def run(
    profile: str,
    url: str,
    token: str,
    *,
    users: int = DEFAULT_USERS,
    timeout: float = DEFAULT_TIMEOUT,
    out: TextIO | None = None,
    progress: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Play ``profile``'s conversation against the SCIM base ``url`` with bearer ``token``.

    Each step's line is written to ``out`` as soon as it is known, then the
    summary; ``progress`` gets a line now and then during long steps (``users``
    sets how many users are pushed). Requests wait ``timeout`` seconds for an
    answer. Nothing is raised for what the server answers: failures are in the
    result.

    :raises InputError: for an unknown profile, a URL that is not an http(s)
        URL, an empty token or fewer than 3 users, before any request is sent.
    """
    conversation_class = _conversation_class(profile)
    try:
        endpoint = parse_base_url(url)
    except ValueError as error:
        raise InputError(str(error)) from None
    if not token.strip():
        raise InputError("the token is empty; give the SCIM bearer token the IdP would send")
    if users < MIN_USERS:
        raise InputError(f"--users must be at least {MIN_USERS}: a group needs three members")
    if timeout <= 0:
        raise InputError("the timeout must be a positive number of seconds")
    report = progress or (lambda _: None)
    run_id = secrets.token_hex(3)
    client = Client(
        endpoint,
        token.strip(),
        headers=conversation_class.headers,
        content_type=conversation_class.content_type,
        timeout=timeout,
        plus_for_spaces=conversation_class.plus_for_spaces,
    )
    conversation = conversation_class(client, users=users, run_id=run_id, progress=report)
    report(f"{profile} against {url} (run {run_id}, {users} users)")
    results: list[StepResult] = []
    stopped = None
    for step in conversation.steps():
        try:
            step.run()
            result = StepResult(step.name, "PASS")
        except Failure as error:
            result = StepResult(step.name, "FAIL", str(error))
        except Skip as error:
            result = StepResult(step.name, "SKIP", str(error))
        except Unreachable as error:
            stopped = str(error)
            result = StepResult(step.name, "FAIL", f"{error}; the run stops here")
        except TransportError as error:
            result = StepResult(step.name, "FAIL", str(error))
        results.append(result)
        if out is not None:
            print(result.line(), file=out, flush=True)
        if stopped is not None:
            break
    outcome = SimulationResult(
        profile=profile,
        run_id=run_id,
        steps=tuple(results),
        requests=client.requests,
        stopped=stopped,
    )
    if out is not None:
        print(outcome.summary(), file=out, flush=True)
    return outcome


def _conversation_class(profile: str) -> type[Conversation]:
    try:
        return CONVERSATIONS[profile]
    except KeyError:
        choices = ", ".join(CONVERSATIONS)
        raise InputError(f"unknown profile {profile!r}; choose one of: {choices}") from None
