"""Solve an ALTCHA challenge as the widget does, with the altcha library's own solver."""

from __future__ import annotations

from typing import Any

from altcha import PayloadV1, solve_challenge_v1


def solve_altcha(challenge: dict[str, Any]) -> str:
    """The base64 payload the widget would post for ``challenge`` (the JSON our endpoint serves)."""
    algorithm, target, salt = challenge["algorithm"], challenge["challenge"], challenge["salt"]
    solution = solve_challenge_v1(target, salt, algorithm, challenge["maxNumber"])
    if solution is None:
        raise ValueError("challenge has no solution up to maxNumber")
    return PayloadV1(algorithm, target, solution.number, salt, challenge["signature"]).to_base64()
