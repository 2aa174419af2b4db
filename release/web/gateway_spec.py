"""The OpenAPI 3 document of /gateway/v1: what a gateway's script may call (docs/halon/)."""

from __future__ import annotations

from typing import Any

from release.core import links

JSON = "application/json"


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    error = {"type": "object", "required": ["error", "message"], "properties": {"error": {"type": "string"}}}
    return {"description": description, "content": {JSON: {"schema": schema or error}}}


ADDRESS = {"type": "string", "minLength": 1, "maxLength": 320}
RAW = "message/rfc822"
# A message as the exporter pushes it, byte for byte (shortened: no Received lines).
EXAMPLE_MESSAGE = (
    "Subject: Invoice 2026-118\r\nFrom: Anna Partner <anna@partner.example>\r\nTo: alice@example.com\r\n"
    "Date: Sat, 05 Dec 2026 09:30:00 +0000\r\nMessage-ID: <invoice-2026-118@partner.example>\r\n"
    "\r\nPlease find the invoice attached.\r\n"
)
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


def _header(name: str, description: str, example: Any, schema: dict[str, Any] | None = None,
            *, required: bool = False, json_schema: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """A request header; ``json_schema``: its value is that JSON, serialized (a ``content``
    parameter, whose ``example`` is the JSON value itself)."""
    param: dict[str, Any] = {"name": name, "in": "header", "required": required, "description": description}
    if json_schema is not None:
        param["content"] = {JSON: {"schema": json_schema, "example": example}}
    else:
        param["schema"] = schema or {"type": "string"}
        param["example"] = example
    return param


SYMBOL = {"type": "object", "properties": {"name": {"type": "string"}, "score": {"type": "number"}}}
PUSH = {
    "summary": "An rspamd node rejected a message: keep it (Rspamd's metadata_exporter, docs/rspamd/)",
    "description": "The body is the message as received, byte for byte; the envelope comes in the "
    "`X-Rspamd-*` headers the exporter adds with `meta_headers = true`. Idempotent: a repeat of the "
    "same bytes is answered 200 and adds only recipients not seen before.",
    "operationId": "pushRejected",
    "security": [{"nodePush": []}],
    "parameters": [
        {
            "name": "node",
            "in": "path",
            "required": True,
            "description": "the rspamd node's configured name",
            "schema": {"type": "string", "pattern": "^[a-z0-9-]+$"},
        },
        _header(
            "X-Rspamd-from",
            'The envelope sender; "", "<>" or "unknown" for the null sender (a bounce).',
            "anna@partner.example",
            {"type": "string", "maxLength": 320},
            required=True,
        ),
        _header(
            "X-Rspamd-rcpt",
            "The envelope recipients, a JSON list.",
            ["alice@example.com"],
            required=True,
            json_schema={"type": "array", "items": ADDRESS, "minItems": 1, "maxItems": 1000},
        ),
        _header("X-Rspamd-qid", "The MTA's queue id (for its logs).", "4Qx9Lm2Zb7z9", {"type": "string"}),
        _header("X-Rspamd-ip", "The sending client's IP address.", "198.51.100.7", {"type": "string"}),
        _header("X-Rspamd-score", "Rspamd's score of the message.", "15.00", {"type": "string"}),
        _header(
            "X-Rspamd-symbols",
            "The symbols that matched, a JSON list.",
            [{"name": "GTUBE", "score": 15.0}],
            json_schema={"type": "array", "items": SYMBOL},
        ),
    ],
    "requestBody": {
        "required": True,
        "description": "The message (at most the node's max_message_bytes).",
        "content": {
            RAW: {
                "schema": {"type": "string", "format": "binary", "contentMediaType": RAW},
                "example": EXAMPLE_MESSAGE,
            },
            "text/plain": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": _answer(
            "Kept (or already kept): the message's id and how many recipients' copies are new.",
            {
                "type": "object",
                "required": ["status", "message", "copies"],
                "properties": {
                    "status": {"type": "string", "enum": ["stored", "already stored"]},
                    "message": {"type": "string"},
                    "copies": {"type": "integer", "minimum": 0},
                },
            },
        ),  # fmt: skip
        "400": _answer("The body is empty, or the envelope headers are missing or malformed."),
        "401": _answer("Not the node's push credentials (HTTP Basic: the node's name and push_password)."),
        "404": _answer("No rspamd node of that name is configured."),
        "413": _answer("The message is larger than the node's max_message_bytes."),
        "415": _answer("A form or JSON body: send the message itself (message/rfc822)."),
    },
}


def gateway_openapi_document(public_url: str) -> dict[str, Any]:
    """The document, with this deployment's URL as the server."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sender-fp-release gateway API",
            "version": "1",
            "description": "Called by the gateway: the recipients' allow-list, held messages (ndr mode) "
            "and the messages rspamd nodes reject.",
        },
        "servers": [{"url": public_url.rstrip("/") + "/gateway/v1"}],
        "components": {
            "securitySchemes": {
                "allowlistKey": {"type": "http", "scheme": "bearer"},
                "nodePush": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "user: the node's name, password: its push_password",
                },
            }
        },
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
            "/rspamd/{node}": {"post": PUSH},
        },
    }
