"""The demo's cast: the example contracts' services and the knobs that decide how each month ends.

The example policies ship as ``ledger`` package data in ``ledger/examples/`` (the one
source of truth; ``docs/examples/README.md`` explains them): they are domain input that
tests and docs read too, so they stay with the domain while the story that uses them
lives here, with the command that tells it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import ledger
from ledger.events import ExclusionCategory, Impact

# Package data of `ledger`: works from a source checkout and an installed wheel.
EXAMPLES_DIR: Final = Path(ledger.__file__).with_name("examples")


def demo_month() -> str:
    """The past month the demo tells."""
    return "2026-10"


def example_policy_paths() -> list[Path]:
    """The shipped example policy files, sorted by name."""
    return sorted(EXAMPLES_DIR.glob("*.toml"))


@dataclass(frozen=True)
class Service:
    """One example contract's service and the knobs that decide how its month ends."""

    contract: str
    service: str
    zone: str
    probes: tuple[str, ...]
    details: tuple[str, ...]
    # Main incident: minutes after 14:00 when the probes recover, and when the incident is resolved.
    incident: tuple[int, int]
    # Minutes of outage in the cancelled window, after the early completion, under the revoked exclusion.
    glitch: int
    # Non-conforming window: short notice, or (for C) full notice but inside business hours.
    in_hours: bool
    # Impact of the customer-reported incident later put down to the customer's ISP.
    customer_impact: Impact
    # Category of the exclusion later revoked; None: a force-majeure declaration is revoked.
    revoked_category: ExclusionCategory | None
    long_outage: bool = False
    holiday_notice: bool = False
    claims: bool = False
    # Which agreement's support tickets the month holds (cli/demo/tickets.py); "": none.
    tickets: str = ""


_HTTP_DETAILS: Final = (
    "HTTP 503 from /healthz",
    "HTTP 502 Bad Gateway",
    "TLS handshake timeout after 10 s",
    "TCP connect timeout after 10 s",
)
# A probe whose check says one thing only (an ICMP ping cannot fail with an HTTP status).
PROBE_DETAILS: Final = {"ping": ("ICMP echo request timed out", "ICMP destination unreachable")}

_OPTIMY: Final = Service(
    contract="sla-c-en-2026",
    service="optimy-ca",
    zone="America/Toronto",
    probes=("toronto", "brussels", "virginia"),
    details=_HTTP_DETAILS,
    incident=(6, 9),
    glitch=3,
    in_hours=True,
    customer_impact="outage",
    revoked_category="third_party",
    holiday_notice=True,
    tickets="C",
)
SERVICES: Final = (
    Service(
        contract="sla-a-2026",
        service="workspace",
        zone="Europe/Paris",
        probes=("paris", "frankfurt", "london"),
        details=_HTTP_DETAILS,
        incident=(25, 38),
        glitch=10,
        in_hours=False,
        customer_impact="none",
        revoked_category=None,
        claims=True,
    ),
    Service(
        contract="sla-b-2026",
        service="biings",
        zone="Europe/Zurich",
        probes=("ping", "tcp-443"),
        details=("TCP connect to :443 refused", "TCP connect to :443 timed out"),
        incident=(12, 20),
        glitch=8,
        in_hours=False,
        customer_impact="none",
        revoked_category="third_party",
        long_outage=True,
        tickets="B",
    ),
    _OPTIMY,
    replace(_OPTIMY, contract="sla-c-fr-2026", service="optimy-be"),  # seed C's French text: the same story
    Service(
        contract="sla-d-2026",
        service="better-impact",
        zone="America/Toronto",
        probes=("toronto", "london", "sydney"),
        details=_HTTP_DETAILS,
        incident=(50, 65),
        glitch=10,
        in_hours=False,
        customer_impact="outage",
        revoked_category="internet_failure",
        tickets="D",
    ),
)


def demo_services() -> dict[str, str]:
    """Each example contract's service, as the demo facts name it."""
    return {svc.contract: svc.service for svc in SERVICES}
