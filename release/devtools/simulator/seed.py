"""The messages demo mode starts with."""

from __future__ import annotations

import time

from release.devtools.simulator.store import SimQueue


def seed_demo(sim: SimQueue) -> list[str]:
    """Add a few plausible rejected messages for demo mode; returns their transaction ids."""
    now = time.time()
    return [
        sim.add_message(
            "invoices@supplier.example",
            ["accounts@example.com"],
            "Invoice 2024-117 for March deliveries",
            ts=now - 3 * 3600,
            score=100.0,
            sender_ip="198.51.100.23",
        ),
        sim.add_message(
            "anna.berg@partner.example",
            ["alice@example.com", "bob@example.com"],
            "Meeting notes and next steps",
            ts=now - 40 * 60,
            score=90.0,
            sender_ip="203.0.113.7",
        ),
        sim.add_message(
            "newsletter@club.example",
            ["carol@example.com"],
            "Your weekly club update",
            ts=now - 10 * 60,
            score=100.0,
            sender_ip="192.0.2.44",
        ),
    ]
