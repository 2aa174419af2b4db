"""The security suite builds its stacks with ``make_stack`` (tests/conftest.py); its helpers
(drain_due, snapshots) live in tests/support/."""
