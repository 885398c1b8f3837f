"""A seeded generator of realistic monitoring data for the ledger, written as NDJSON.

``python -m benchmarks.generate --events N --services S --seed K --out FILE.ndjson
[--contracts-dir DIR]``

The data is month-major: every service tells one month's story (flapping probes,
multi-probe outages, incidents, maintenance, force majeure, exclusions and their
revocations, credit claims), then the next month, and so on until N lines are
written. Each (month, service) chunk has its own ``random.Random`` seeded from
(seed, month, service), and the number of events per service-month is fixed, so a
smaller file is exactly a prefix of a larger one with the same seed and services:
the 1M-event and the 10M-event stores hold the same facts for their first months
and a report on one of those months must answer the same on both.

Only one chunk (one service-month, a few hundred lines) is in memory at a time;
within a chunk lines are sorted by when they reach the ledger (the instant plus an
export lag), which puts them out of order with respect to their ``at``.

Lines are formatted with f-strings: all generated strings are plain ASCII without
quotes or backslashes, so no JSON escaping is needed, and this is several times
faster than building dicts and encoding them.
"""

from __future__ import annotations

import argparse
import calendar
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TextIO
from zoneinfo import ZoneInfo

PROBES: Final = ("eu-west", "eu-central", "us-east", "us-west", "ap-south")
PER_SERVICE_MONTH: Final = 500  # ~1,000 services x 5 probes: 10M events span 20 months
START: Final = "2025-01"
_DETAILS: Final = (
    "HTTP 503 from /healthz",
    "HTTP 502 Bad Gateway",
    "TLS handshake timeout after 10 s",
    "TCP connect timeout after 10 s",
    "DNS resolution failed",
)
_CATEGORIES: Final = ("customer_isp", "customer_equipment", "customer_action", "third_party",
                      "internet_failure")
_TITLES: Final = ("Database primary unreachable", "Elevated error rates on API", "Slow report exports",
                  "Login failures for some users", "Queue backlog delaying notifications")
_MAINT: Final = ("Database major upgrade", "Kernel patch", "Network switch firmware", "Storage migration",
                 "Certificate rotation")
# Notice given for maintenance windows, in hours: some too short for a 24 h or 5-business-day rule.
_NOTICES: Final = (2, 6, 20, 30, 50, 80, 200, 240)


# --- contracts -----------------------------------------------------------------------

# Policy variants modelled on ledger/examples/ (A, B, C, D), plus a UTC quorum-of-5 one.
_TEMPLATES: Final = (
    (  # A: a month free below 99.97 %, on claim; down when every probe is.
        'timezone = "Europe/Paris"\ncurrency = "EUR"\nmonthly_fee = "149.00"\n',
        'target = "99.97"\nformula = "downtime_over_total"\noutage_when = "all"\n'
        'probes = ["eu-west", "eu-central", "us-east"]\nexcludable = ["force_majeure"]\n',
        '[maintenance]\nmin_notice = "24h"\noutside_business_hours = false\nnonconforming = "downtime"\n',
        '[credits]\ntiers = [{ below = "99.97", percent = "100" }]\ncap_percent = "100"\n'
        "claim_deadline_days = 3\n",
    ),
    (  # B: automatic credit and a daily rate per started day of a long outage; excuses nothing.
        'timezone = "Europe/Zurich"\ncurrency = "CHF"\nannual_fee = "6000.00"\n',
        'target = "99.5"\nformula = "downtime_over_total"\noutage_when = "any"\n'
        'probes = ["eu-central", "eu-west"]\nexcludable = []\n',
        "",
        '[credits]\ntiers = [{ below = "99.5", percent = "10" }]\n'
        'long_outage = { over = "24h", per_started_day = true }\n',
    ),
    (  # C: best efforts, quorum 2 of 3, 5 business days of notice outside business hours.
        'timezone = "America/Toronto"\ncurrency = "CAD"\nannual_fee = "18000.00"\n',
        'target = "99.90"\nformula = "maintenance_out_of_total"\noutage_when = 2\n'
        'probes = ["us-east", "us-west", "eu-west"]\nexcludable = ["customer_isp", "force_majeure", '
        '"internet_failure", "customer_equipment", "customer_action", "third_party"]\n',
        '[maintenance]\nmin_notice = "5 business days"\noutside_business_hours = true\n'
        'nonconforming = "emergency"\n\n[calendar]\ntimezone = "America/Toronto"\nholidays = "CA-ON"\n'
        'business_hours = "09:00-17:30"\n',
        "",
    ),
    (  # D: tiered credits on the annual fee pro-rated to a month, automatic.
        'timezone = "America/Toronto"\ncurrency = "CAD"\nannual_fee = "3600.00"\n',
        'target = "99.95"\nformula = "maintenance_out_of_total"\noutage_when = "all"\n'
        'probes = ["us-east", "eu-west", "ap-south"]\nexcludable = ["force_majeure", "customer_isp", '
        '"customer_equipment", "customer_action", "internet_failure"]\n',
        '[maintenance]\nmin_notice = "24h"\noutside_business_hours = false\nnonconforming = "downtime"\n',
        '[credits]\ntiers = [{ below = "99.95", percent = "25" }, { below = "99.9", percent = "50" }, '
        '{ below = "99", percent = "100" }]\ncap_percent = "100"\n',
    ),
    (  # E: UTC, 3 of all 5 probes, Belgian business days, claim within 10 days.
        'timezone = "UTC"\ncurrency = "EUR"\nmonthly_fee = "2500.00"\n',
        'target = "99.9"\nformula = "downtime_over_total"\noutage_when = 3\n'
        f"probes = [{', '.join(f'{chr(34)}{p}{chr(34)}' for p in PROBES)}]\n"
        'excludable = ["force_majeure", "third_party"]\n',
        '[maintenance]\nmin_notice = "2 business days"\noutside_business_hours = true\n'
        'nonconforming = "downtime"\n\n[calendar]\ntimezone = "Europe/Brussels"\nholidays = "BE"\n'
        'business_hours = "08:00-18:00"\n',
        '[credits]\ntiers = [{ below = "99.9", percent = "10" }, { below = "99.5", percent = "30" }]\n'
        'cap_percent = "50"\nclaim_deadline_days = 10\n',
    ),
)
_ZONES: Final = tuple(t[0].split('"')[1] for t in _TEMPLATES)


def service_name(i: int) -> str:
    """The name of service number ``i`` (0-based)."""
    return f"svc-{i:04d}"


def contract_id(i: int) -> str:
    """The id of the one contract on service number ``i``."""
    return f"{service_name(i)}-sla"


def contract_toml(i: int) -> str:
    """The policy TOML of service ``i``'s contract (variant ``i % 5``)."""
    contract, availability, rest, credits = _TEMPLATES[i % len(_TEMPLATES)]
    return (
        f'[contract]\nid = "{contract_id(i)}"\ncustomer = "Customer {i:04d}"\n'
        f'service = "{service_name(i)}"\n{contract}\n[availability]\n{availability}\n'
        f"{rest}\n{credits}"
    )


def write_contracts(services: int, directory: Path) -> list[Path]:
    """Write one policy file per service into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(services):
        path = directory / f"{contract_id(i)}.toml"
        path.write_text(contract_toml(i), encoding="utf-8")
        paths.append(path)
    return paths


# --- events --------------------------------------------------------------------------


def _month_bounds(index: int, start: str) -> tuple[str, int, int]:
    """Month ``index`` after ``start``: its name and UTC epoch seconds of its start and end."""
    y0, m0 = (int(p) for p in start.split("-"))
    y, m = divmod(y0 * 12 + m0 - 1 + index, 12)
    y2, m2 = divmod(y * 12 + m + 1, 12)
    return (f"{y:04d}-{m + 1:02d}", calendar.timegm((y, m + 1, 1, 0, 0, 0)),
            calendar.timegm((y2, m2 + 1, 1, 0, 0, 0)))


def _utc(t: int) -> str:
    # time.strftime on a struct_time is ~3x faster than datetime.isoformat for whole seconds.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class _Chunk:
    """One service's month: lines keyed by arrival, plus the human-declared facts' names."""

    def __init__(self, seed: int, month: str, ms: int, me: int, svc: int) -> None:
        self.rng = random.Random(f"{seed}:{month}:{svc}")
        self.month, self.ms, self.me = month, ms, me
        self.svc = service_name(svc)
        self.contract = contract_id(svc)
        self.zone = ZoneInfo(_ZONES[svc % len(_ZONES)])
        self.prefix = f"{self.svc}:{month}"
        self.seq = 0
        self.lines: list[tuple[int, int, str]] = []

    def local(self, t: int) -> str:
        """People write local time with an offset; monitoring writes UTC."""
        return datetime.fromtimestamp(t, UTC).astimezone(self.zone).isoformat()

    def add(self, arrival: int, body: str) -> None:
        self.seq += 1
        self.lines.append((arrival, self.seq, f'{{"id":"{self.prefix}:{self.seq}",{body}}}\n'))

    def lag(self) -> int:
        # Most probe reports arrive within two minutes; one in twenty comes with a batch
        # export 10-60 minutes late, after later reports of the other probes.
        r = self.rng
        return r.randint(600, 3600) if r.random() < 0.05 else r.randint(0, 120)

    def probe(self, probe: str, at: int, failed: bool, detail: str | None = None) -> None:
        if failed:
            d = detail or self.rng.choice(_DETAILS)
            body = (f'"type":"probe_failed","service":"{self.svc}","probe":"{probe}",'
                    f'"at":"{_utc(at)}","detail":"{d}"')
        else:
            body = f'"type":"probe_recovered","service":"{self.svc}","probe":"{probe}","at":"{_utc(at)}"'
        self.add(at + self.lag(), body)

    def down(self, probe: str, start: int, end: int) -> None:
        """One probe down from ``start`` to ``end``; sometimes a repeated failure while down."""
        self.probe(probe, start, True)
        if end - start > 120 and self.rng.random() < 0.1:
            self.probe(probe, self.rng.randint(start + 1, end - 1), True, "still failing")
        self.probe(probe, end, False)

    def outage(self, start: int, minutes: int, probes: tuple[str, ...] = PROBES) -> None:
        """Several probes down together: failures within a minute, recoveries staggered."""
        end = start + minutes * 60
        for i, p in enumerate(probes):
            self.down(p, start + self.rng.randint(0, 60), end + 45 * i + self.rng.randint(0, 30))

    def flap(self, start: int) -> None:
        """One probe going up and down a few times: short failure/recovery pairs."""
        r = self.rng
        p = r.choice(PROBES)
        t = start
        for _ in range(r.randint(1, 6)):
            up = t + r.randint(20, 300)
            self.down(p, t, up)
            t = up + r.randint(10, 180)

    def when(self, margin: int = 6 * 3600) -> int:
        return self.rng.randint(self.ms, self.me - margin)

    def human_facts(self) -> None:
        """Incidents, maintenance, force majeure, exclusions, revocations, claims."""
        r, svc = self.rng, self.svc
        for k in range(r.choice((0, 1, 1, 2, 3))):
            t = self.when()
            impact = r.choices(("outage", "degraded", "none"), (5, 3, 2))[0]
            end = t + r.randint(5, 180) * 60
            name = f"{self.prefix}:inc{k}"
            self.add(t + 60, f'"type":"incident_opened","service":"{svc}","incident":"{name}",'
                             f'"at":"{self.local(t)}","impact":"{impact}","title":"{r.choice(_TITLES)}",'
                             f'"severity":"SEV{r.randint(1, 3)}"')
            self.add(end + 60, f'"type":"incident_resolved","incident":"{name}","at":"{self.local(end)}"')
            if impact == "outage":
                self.outage(t + r.randint(-300, 300), r.randint(3, 60), PROBES[: r.randint(1, 5)])
        for k in range(r.choice((0, 1, 1, 2))):
            # Windows at night, local time; the notice decides whether they conform.
            t = self.when(margin=2 * 86400)
            t -= t % 3600
            start, end = t, t + r.randint(1, 4) * 3600
            announced = start - r.choice(_NOTICES) * 3600
            name = f"{self.prefix}:mnt{k}"
            self.add(announced, f'"type":"maintenance_announced","service":"{svc}","maintenance":"{name}",'
                                f'"announced_at":"{self.local(announced)}","starts_at":"{self.local(start)}",'
                                f'"ends_at":"{self.local(end)}","title":"{r.choice(_MAINT)}"')
            fate = r.random()
            if fate < 0.15:
                at = start - r.randint(1, 48) * 3600
                self.add(at, f'"type":"maintenance_cancelled","maintenance":"{name}","at":"{self.local(at)}"')
            elif fate < 0.4:
                at = start + r.randint(10, end - start - 60)
                self.add(at, f'"type":"maintenance_completed","maintenance":"{name}","at":"{self.local(at)}"')
            if fate >= 0.15 or r.random() < 0.5:
                self.outage(start + r.randint(0, 900), r.randint(10, 90))
        declared: list[str] = []
        if r.random() < 0.03:
            t = self.when()
            end = t + r.randint(1, 8) * 3600
            name = f"{self.prefix}:fm"
            self.add(end + 3 * 3600, f'"type":"force_majeure_declared","service":"{svc}",'
                                     f'"declaration":"{name}","starts_at":"{self.local(t)}",'
                                     f'"ends_at":"{self.local(end)}","reason":"Regional power grid failure"')
            self.outage(t + 600, r.randint(30, (end - t) // 60))
            declared.append(name)
        for k in range(r.choice((0, 0, 0, 1, 1, 2))):
            t = self.when()
            end = t + r.randint(1, 6) * 3600
            name = f"{self.prefix}:exc{k}"
            scoped = f',"contract":"{self.contract}"' if r.random() < 0.5 else ""
            self.add(end + 86400, f'"type":"exclusion_declared","service":"{svc}","exclusion":"{name}",'
                                  f'"category":"{r.choice(_CATEGORIES)}","starts_at":"{self.local(t)}",'
                                  f'"ends_at":"{self.local(end)}","reason":"Upstream provider incident"'
                                  f"{scoped}")
            self.outage(t + 300, r.randint(5, 60), PROBES[: r.randint(2, 5)])
            declared.append(name)
        for name in declared:
            if r.random() < 0.3:
                self.add(self.me + 86400, f'"type":"exclusion_revoked","ref":"{name}",'
                                          '"reason":"Post-mortem: caused by our own change"')
        if r.random() < 0.3:
            # Most claims in time (by the 3rd), some late.
            at = self.me + r.randint(1, 6 * 86400)
            self.add(at, f'"type":"credit_claim_filed","contract":"{self.contract}",'
                         f'"month":"{self.month}","at":"{self.local(at)}"')

    def fill(self, budget: int) -> None:
        """Probe noise until the chunk holds ``budget`` lines: mostly one probe flapping, some partial
        outages, rarely every probe down for hours."""
        r = self.rng
        while len(self.lines) < budget:
            x = r.random()
            if x < 0.9:
                self.flap(self.when())
            elif x < 0.995:
                self.outage(self.when(), r.randint(1, 20), tuple(r.sample(PROBES, r.randint(2, 4))))
            else:
                self.outage(self.when(), r.randint(60, 10 * 60))

    def sorted_lines(self) -> list[str]:
        self.lines.sort()
        return [line for *_, line in self.lines]


def months_needed(events: int, services: int, per_service_month: int = PER_SERVICE_MONTH) -> int:
    """How many months ``events`` lines span."""
    return max(1, -(-events // (services * per_service_month)))


def month_names(events: int, services: int, start: str = START,
                per_service_month: int = PER_SERVICE_MONTH) -> list[str]:
    """The months the generated data covers (the last one may be partial)."""
    return [_month_bounds(i, start)[0] for i in range(months_needed(events, services, per_service_month))]


def generate_lines(events: int, services: int, seed: int, *, start: str = START,
                   per_service_month: int = PER_SERVICE_MONTH) -> Iterator[str]:
    """Stream exactly ``events`` NDJSON lines (each ending in a newline), one chunk in memory."""
    left = events
    index = 0
    while left > 0:
        month, ms, me = _month_bounds(index, start)
        for svc in range(services):
            chunk = _Chunk(seed, month, ms, me, svc)
            chunk.human_facts()
            chunk.fill(per_service_month)
            for line in chunk.sorted_lines():
                yield line
                left -= 1
                if left == 0:
                    return
        index += 1


def write_events(out: TextIO, events: int, services: int, seed: int, *, start: str = START,
                 per_service_month: int = PER_SERVICE_MONTH) -> int:
    """Write the lines to ``out`` in blocks; return how many were written."""
    n = 0
    block: list[str] = []
    for line in generate_lines(events, services, seed, start=start, per_service_month=per_service_month):
        block.append(line)
        if len(block) == 10_000:
            out.write("".join(block))
            n += len(block)
            block.clear()
    out.write("".join(block))
    return n + len(block)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", default=START, help="first month, YYYY-MM")
    ap.add_argument("--per-service-month", type=int, default=PER_SERVICE_MONTH)
    ap.add_argument("--out", required=True, help="NDJSON file, or - for stdout")
    ap.add_argument("--contracts-dir", type=Path, help="also write one policy TOML per service here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.out == "-":
        n = write_events(sys.stdout, args.events, args.services, args.seed, start=args.start,
                         per_service_month=args.per_service_month)
    else:
        with open(args.out, "w", encoding="ascii") as f:
            n = write_events(f, args.events, args.services, args.seed, start=args.start,
                             per_service_month=args.per_service_month)
    if args.contracts_dir is not None:
        write_contracts(args.services, args.contracts_dir)
    months = month_names(args.events, args.services, args.start, args.per_service_month)
    print(f"generated {n} events for {args.services} services, {months[0]}..{months[-1]}, "
          f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
