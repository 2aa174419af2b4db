"""Operator-endpoint fixtures: stacks with extra config sections (shared with the security suite)."""

from tests.security.conftest import make_stack

__all__ = ["make_stack"]
