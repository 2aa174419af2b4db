"""The messages demo mode starts with, each with the bytes a real sender would have sent."""

from __future__ import annotations

import time

from release.devtools.simulator.invoice import invoice_message
from release.devtools.simulator.rfc5322 import plain_message
from release.devtools.simulator.store import SimQueue

MEETING_NOTES = """Hi Alice, hi Bob,

thanks for your time today. As agreed:

1. Anna sends the revised delivery schedule by Friday.
2. Bob checks the open points in the service agreement with legal.
3. We meet again on Tuesday at 10:00 (same video link).

Best,
Anna Berg
Partner Logistics
"""

CLUB_UPDATE = """Hello Carol,

this week at the club:

- Saturday 9:00: beginners' training on court 2
- Sunday: the summer tournament sign-up closes at midnight
- The clubhouse is closed on Monday for repairs

See you on court!
The club team

You receive this update as a club member. Manage your subscription in your member profile.
"""


def seed_demo(sim: SimQueue) -> list[str]:
    """Add a few plausible rejected messages for demo mode; returns their transaction ids."""
    now = time.time()
    invoice = ("invoices@supplier.example", ["accounts@example.com"], "Invoice 2024-117 for March deliveries")
    meeting = ("anna.berg@partner.example", ["alice@example.com", "bob@example.com"], "Meeting notes and next steps")
    club = ("newsletter@club.example", ["carol@example.com"], "Your weekly club update")
    return [
        sim.add_message(
            *invoice,
            ts=now - 3 * 3600,
            score=100.0,
            sender_ip="198.51.100.23",
            raw=invoice_message(*invoice, now - 3 * 3600, number="2024-117"),
        ),
        sim.add_message(
            *meeting,
            ts=now - 40 * 60,
            score=90.0,
            sender_ip="203.0.113.7",
            raw=plain_message(*meeting, now - 40 * 60, body=MEETING_NOTES),
        ),
        sim.add_message(
            *club,
            ts=now - 10 * 60,
            score=100.0,
            sender_ip="192.0.2.44",
            raw=plain_message(*club, now - 10 * 60, body=CLUB_UPDATE),
        ),
    ]
