"""The OpenAPI 3 document of /gateway/v1: what a gateway's script may call (docs/halon/)."""

from __future__ import annotations

from typing import Any

from release.core import links

JSON = "application/json"


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    error = {"type": "object", "required": ["error", "message"], "properties": {"error": {"type": "string"}}}
    return {"description": description, "content": {JSON: {"schema": schema or error}}}


ADDRESS = {"type": "string", "minLength": 1, "maxLength": 320}
STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
# The fields of a report link (DESIGN 2.1); the signature is the push's authentication.
LINK_FIELDS = {
    "type": "object",
    "required": list(links.FIELDS),
    "additionalProperties": False,
    "properties": {
        "n": {"type": "string", "pattern": "^[a-z0-9-]+$", "description": "the node's configured name"},
        "m": {"type": "string", "minLength": 1, "maxLength": 128, "description": "the transaction id"},
        "t": {"type": "string", "pattern": "^[0-9]{1,12}$", "description": "issue time, Unix seconds"},
        "s": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "HMAC-SHA256, lower-case hex"},
    },
}


def gateway_openapi_document(public_url: str) -> dict[str, Any]:
    """The document, with this deployment's URL as the server."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sender-fp-release gateway API",
            "version": "1",
            "description": "Called by the gateway's script: the recipients' allow-list, and held messages (ndr mode).",
        },
        "servers": [{"url": public_url.rstrip("/") + "/gateway/v1"}],
        "components": {"securitySchemes": {"allowlistKey": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/allowed": {
                "get": {
                    "summary": "Whether the recipient chose to always allow this sender",
                    "operationId": "isAllowed",
                    "security": [{"allowlistKey": []}],
                    "parameters": [
                        {"name": "recipient", "in": "query", "required": True, "schema": ADDRESS},
                        {"name": "sender", "in": "query", "required": True, "schema": ADDRESS},
                    ],
                    "responses": {
                        "200": _answer(
                            "The answer.", {"type": "object", "properties": {"allowed": {"type": "boolean"}}}
                        ),
                        "400": _answer("An address is missing or too long."),
                        "401": _answer("No valid key ([policy] allowlist_keys)."),
                        "404": _answer("The allow-list is off (no key configured)."),
                    },
                }
            },
            "/held": {
                "post": {
                    "summary": 'A halon6 node in sender_notice = "ndr" mode held a message: mail its sender the link',
                    "operationId": "pushHeld",
                    "requestBody": {"required": True, "content": {JSON: {"schema": LINK_FIELDS}}},
                    "responses": {
                        "202": _answer("Queued: the sender gets a report mail with the link.", STATUS),
                        "200": _answer("Already queued for this message (nothing new is sent).", STATUS),
                        "400": _answer("Not the four link fields, a bad signature or an unknown node."),
                        "403": _answer("The node is not in ndr mode."),
                        "410": _answer("The link is older than the short retention."),
                    },
                }
            },
        },
    }
