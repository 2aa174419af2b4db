"""The OpenAPI 3 document of /api/v1, kept next to the API and checked against it by tests."""

from __future__ import annotations

from typing import Any

from release.core.retention import BOUNDS
from release.db.states import RecipientState, ReportState
from release.web.converters import MAX_ID

JSON = "application/json"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


UNAUTHORIZED = _error("No valid API key.")
# What the notification mail carries (release.core.links.TOKEN_RE): 256 bits, URL-safe base64.
TOKEN = {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"}
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    },
    "ReleaseStatus": {
        "type": "object",
        "required": ["state", "final", "tone", "headline", "detail", "can_release"],
        "properties": {
            "state": {"type": "string", "enum": [s.value for s in RecipientState]},
            "final": {"type": "boolean"},
            "tone": {"type": "string"},
            "headline": {"type": "string"},
            "detail": {"type": "string"},
            "can_release": {"type": "boolean"},
        },
    },
    "Recipient": {
        "type": "object",
        "required": ["id", "address", "state", "expires_at", "released_at"],
        "properties": {
            "id": {"type": "integer"},
            "address": {"type": "string"},
            "state": {"type": "string", "enum": [s.value for s in RecipientState]},
            "expires_at": {"type": "string", "format": "date-time"},
            "released_at": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "Report": {
        "type": "object",
        "required": ["id", "node", "message_id", "state", "sender", "subject", "created_at", "recipients"],
        "properties": {
            "id": {"type": "integer"},
            "node": {"type": "string"},
            "message_id": {"type": "string"},
            "state": {"type": "string", "enum": [s.value for s in ReportState]},
            "sender": {"type": ["string", "null"]},
            "subject": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "recipients": {"type": "array", "items": {"$ref": "#/components/schemas/Recipient"}},
        },
    },
    "ReportPage": {
        "type": "object",
        "required": ["page", "pages", "total", "per_page", "reports"],
        "properties": {
            "page": {"type": "integer", "minimum": 1},
            "pages": {"type": "integer", "minimum": 1},
            "total": {"type": "integer", "minimum": 0},
            "per_page": {"type": "integer"},
            "reports": {"type": "array", "items": {"$ref": "#/components/schemas/Report"}},
        },
    },
    "ReleaseQueued": {
        "type": "object",
        "required": ["id", "state"],
        "properties": {
            "id": {"type": "integer"},
            "state": {"type": "string", "enum": [RecipientState.RELEASE_REQUESTED.value]},
        },
    },
    "Retention": {
        "type": "object",
        "required": ["short_hours", "long_days", "record_days"],
        "properties": {
            "short_hours": {"type": "integer", "minimum": 1},
            "long_days": {"type": "integer", "minimum": 1},
            "record_days": {"type": "integer", "minimum": 1},
        },
    },
    "RetentionChange": {
        "type": "object",
        "required": list(BOUNDS),
        "additionalProperties": False,
        "properties": {
            name: {"type": "integer", "minimum": low, "maximum": high} for name, (low, high) in BOUNDS.items()
        },
        "description": "Also: long_days * 24 > short_hours and record_days >= long_days (else 422).",
    },
}
ADMIN: list[dict[str, list[str]]] = [{"apiKey": []}]


def openapi_document(public_url: str) -> dict[str, Any]:
    """The document, with this deployment's URL as the server."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sender-fp-release API",
            "version": "1",
            "description": "Release status by token (public) and admin endpoints (API key as bearer token).",
        },
        "servers": [{"url": public_url.rstrip("/") + "/api/v1"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/releases/{token}": {
                "get": {
                    "summary": "Status of the copy a release token stands for",
                    "operationId": "getRelease",
                    "parameters": [{"name": "token", "in": "path", "required": True, "schema": TOKEN}],
                    "responses": {
                        "200": _ok("The copy's state.", "ReleaseStatus"),
                        "400": _error("The token contains control characters (refused before any lookup)."),
                        "404": _error("Unknown token."),
                    },
                }
            },
            "/reports": {
                "get": {
                    "summary": "Reports, newest first, 50 a page",
                    "operationId": "listReports",
                    "security": ADMIN,
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"type": "string", "enum": [s.value for s in ReportState]},
                        },
                        {
                            "name": "page",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": 1},
                        },
                    ],
                    "responses": {
                        "200": _ok("One page of reports.", "ReportPage"),
                        "400": _error("A bad state or page."),
                        "401": UNAUTHORIZED,
                    },
                }
            },
            "/recipients/{id}/release": {
                "post": {
                    "summary": "Queue the release of one copy (audited, as the console's action)",
                    "operationId": "releaseCopy",
                    "security": ADMIN,
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                        }
                    ],
                    "responses": {
                        "202": _ok("The release is queued.", "ReleaseQueued"),
                        "401": UNAUTHORIZED,
                        "404": _error("No copy has this id."),
                        "409": _error("The copy cannot be released as it is now."),
                    },
                }
            },
            "/retention": {
                "get": {
                    "summary": "The retention in force",
                    "operationId": "getRetention",
                    "security": ADMIN,
                    "responses": {"200": _ok("Retention times.", "Retention"), "401": UNAUTHORIZED},
                },
                "put": {
                    "summary": "Set the retention times (validated and audited, as in the console)",
                    "operationId": "setRetention",
                    "security": ADMIN,
                    "requestBody": {
                        "required": True,
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/RetentionChange"}}},
                    },
                    "responses": {
                        "200": _ok("The retention now in force.", "Retention"),
                        "400": _error("Not a JSON object with the three whole numbers."),
                        "401": UNAUTHORIZED,
                        "422": _error("The values break a rule (bounds, long > short, records >= long)."),
                    },
                },
            },
        },
    }
