//! `/api/v1/openapi.json`: the OpenAPI 3.1 description of every route.

use axum::Json;
use serde_json::json;

/// No token: the document describes the API, it reveals nothing the source does not.
pub(in crate::http) async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

/// The OpenAPI 3.1 description of every route, written by hand: the handlers parse their input
/// themselves (to name the field at fault), so there are no typed extractors to derive it from.
pub fn openapi_document() -> serde_json::Value {
    let error = json!({ "$ref": "#/components/responses/Error" });
    let unauthorized = json!({ "$ref": "#/components/responses/Unauthorized" });
    let bearer = json!([{ "bearer": [] }]);
    let json_body = |schema: serde_json::Value| json!({ "content": { "application/json": { "schema": schema } } });
    let ok = |description: &str, schema: serde_json::Value| {
        let mut r = json_body(schema);
        r["description"] = json!(description);
        r
    };
    let seq_param = json!({
        "name": "seq", "in": "path", "required": true,
        "description": "the approved log entry to revoke",
        "schema": { "type": "integer", "minimum": 0 }
    });
    let id_param = json!({
        "name": "id", "in": "path", "required": true,
        "schema": { "type": "integer", "minimum": 1 }
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tocsin",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operator API of tocsin: pre-approve posts, revoke approvals, read incidents and the watched accounts' health. Every /api/v1 route except this document needs `Authorization: Bearer <token>`: general.api_token (admin) or one of general.api_tokens; reads need the role read, approvals and revocations approve (403 otherwise)."
        },
        "paths": {
            "/healthz": { "get": {
                "summary": "The process answers",
                "responses": { "200": ok("alive", json!({ "type": "object", "properties": { "status": { "const": "ok" } } })) }
            }},
            "/readyz": { "get": {
                "summary": "tocsin is watching and paging: store, Telegram, every source, the page queue",
                "responses": {
                    "200": ok("ready", json!({ "$ref": "#/components/schemas/Readiness" })),
                    "503": ok("not ready; `checks` names what is wrong", json!({ "$ref": "#/components/schemas/Readiness" }))
                }
            }},
            "/metrics": { "get": {
                "summary": "Prometheus metrics",
                "responses": { "200": {
                    "description": "metrics in the Prometheus/OpenMetrics text format",
                    "content": { "text/plain": { "schema": { "type": "string" } } }
                }}
            }},
            "/api/v1/openapi.json": { "get": {
                "summary": "This document",
                "responses": { "200": ok("the OpenAPI 3.1 document", json!({ "type": "object" })) }
            }},
            "/api/v1/approvals": {
                "get": {
                    "summary": "The approved log, oldest first",
                    "security": bearer,
                    "parameters": [{
                        "name": "account", "in": "query", "required": false,
                        "description": "only entries about this configured account",
                        "schema": { "type": "string" }
                    }],
                    "responses": {
                        "200": ok("the entries", json!({
                            "type": "object",
                            "properties": { "approvals": { "type": "array", "items": { "$ref": "#/components/schemas/Approval" } } }
                        })),
                        "400": error, "401": unauthorized
                    }
                },
                "post": {
                    "summary": "Pre-approve a post before it is published, or (type campaign) a planned bulk send",
                    "security": bearer,
                    "requestBody": {
                        "required": true,
                        "content": { "application/json": { "schema": { "oneOf": [{
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["account", "text"],
                            "properties": {
                                "account": { "type": "string", "description": "a configured account's name" },
                                "text": { "type": "string", "minLength": 1, "description": "the post's text with its links" },
                                "expires_at": { "type": "string", "format": "date-time" },
                                "note": { "type": "string" },
                                "by": { "type": "string", "description": "ignored: the approval is recorded under the name of the token that made it" }
                            }
                        }, {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["type", "sender", "campaign"],
                            "description": "an approved campaign: the sender may reach up to max_recipients envelope recipients per window without email.unapproved_bulk paging",
                            "properties": {
                                "type": { "type": "string", "enum": ["campaign"] },
                                "sender": { "type": "string", "description": "the envelope sender (MAIL FROM)" },
                                "campaign": { "type": "string", "minLength": 1, "description": "X-Campaign-Id, List-Id or tag; * for every campaign of the sender" },
                                "max_recipients": { "type": "integer", "minimum": 0, "description": "absent: no cap" },
                                "window": { "type": "string", "description": "a duration such as 24h; required with max_recipients" },
                                "by": { "type": "string" }
                            }
                        }]}}}
                    },
                    "responses": {
                        "201": ok("recorded", json!({
                            "type": "object",
                            "properties": {
                                "seq": { "type": "integer" },
                                "account": { "type": "string" },
                                "fingerprint": { "type": "string" },
                                "sender": { "type": "string" },
                                "campaign": { "type": "string" },
                                "hash": { "type": "string" }
                            }
                        })),
                        "400": error, "401": unauthorized,
                        "413": { "description": "the body is over 64 KiB" }
                    }
                }
            },
            "/api/v1/approvals/{seq}/revoke": { "post": {
                "summary": "Withdraw an approved post; appends a revocation entry to the log",
                "security": bearer,
                "parameters": [seq_param],
                "requestBody": {
                    "required": true,
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["reason"],
                        "properties": {
                            "reason": { "type": "string", "minLength": 1 },
                            "by": { "type": "string" }
                        }
                    }}}
                },
                "responses": {
                    "200": ok("the revocation as recorded", json!({ "$ref": "#/components/schemas/LogRecord" })),
                    "400": { "description": "missing or empty `reason`, or the entry is a baseline or a revocation (a baseline is changed by approving a new value)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                    "401": unauthorized,
                    "404": error,
                    "409": { "description": "already revoked", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
                }
            }},
            "/api/v1/incidents": { "get": {
                "summary": "Incidents, oldest first",
                "security": bearer,
                "parameters": [{
                    "name": "state", "in": "query", "required": false,
                    "schema": { "type": "string", "enum": ["open", "acked", "resolved"] }
                }],
                "responses": {
                    "200": ok("the incidents", json!({
                        "type": "object",
                        "properties": { "incidents": { "type": "array", "items": { "$ref": "#/components/schemas/Incident" } } }
                    })),
                    "400": error, "401": unauthorized
                }
            }},
            "/api/v1/incidents/{id}": { "get": {
                "summary": "One incident with its timeline",
                "security": bearer,
                "parameters": [id_param],
                "responses": {
                    "200": ok("the incident", json!({ "$ref": "#/components/schemas/Incident" })),
                    "400": error, "401": unauthorized, "404": error
                }
            }},
            "/api/v1/timeline": { "get": {
                "summary": "The hash-chained incident timeline, oldest first (tocsin incidents export)",
                "security": bearer,
                "parameters": [{
                    "name": "since", "in": "query", "required": false,
                    "description": "only events at or after this time: RFC 3339, or a duration back from now such as 24h",
                    "schema": { "type": "string" }
                }],
                "responses": {
                    "200": ok("the events", json!({
                        "type": "object",
                        "properties": { "events": { "type": "array", "items": { "$ref": "#/components/schemas/TimelineRecord" } } }
                    })),
                    "400": error, "401": unauthorized
                }
            }},
            "/api/v1/accounts": { "get": {
                "summary": "Each configured account with its source's health and incident counts",
                "security": bearer,
                "responses": {
                    "200": ok("the accounts", json!({
                        "type": "object",
                        "properties": { "accounts": { "type": "array", "items": { "$ref": "#/components/schemas/Account" } } }
                    })),
                    "401": unauthorized
                }
            }}
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "general.api_token" }
            },
            "responses": {
                "Error": { "description": "refused; `error` names the field, parameter or entry at fault", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "Unauthorized": { "description": "missing or wrong bearer token", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }
            },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": { "error": { "type": "string" } }
                },
                "Readiness": {
                    "type": "object", "required": ["ready", "checks"],
                    "properties": {
                        "ready": { "type": "boolean" },
                        "checks": { "type": "object", "additionalProperties": { "type": "string", "description": "`ok` or what is wrong" } }
                    }
                },
                "Entry": {
                    "type": "object", "required": ["type"],
                    "description": "an approved log entry; `type` is approved_post, baseline, revocation or approved_campaign",
                    "properties": {
                        "type": { "type": "string", "enum": ["approved_post", "baseline", "revocation", "approved_campaign"] },
                        "account": { "type": "string" },
                        "fingerprint": { "type": "string" },
                        "post_id": { "type": "string" },
                        "expires_at": { "type": "string", "format": "date-time" },
                        "note": { "type": "string" },
                        "field": { "type": "string" },
                        "value_digest": { "type": "string" },
                        "seq": { "type": "integer", "description": "revocation: the entry it withdraws" },
                        "reason": { "type": "string" },
                        "sender": { "type": "string", "description": "approved_campaign: the envelope sender" },
                        "campaign": { "type": "string" },
                        "max_recipients": { "type": "integer" },
                        "window": { "type": "string" },
                        "by": { "type": "string" }
                    }
                },
                "LogRecord": {
                    "type": "object", "required": ["seq", "at", "prev", "hash", "entry"],
                    "properties": {
                        "seq": { "type": "integer" },
                        "at": { "type": "string", "format": "date-time" },
                        "prev": { "type": "string", "description": "hash of the previous entry" },
                        "hash": { "type": "string" },
                        "entry": { "$ref": "#/components/schemas/Entry" }
                    }
                },
                "Approval": {
                    "type": "object", "required": ["seq", "at", "hash", "entry", "revoked"],
                    "properties": {
                        "seq": { "type": "integer" },
                        "at": { "type": "string", "format": "date-time" },
                        "hash": { "type": "string" },
                        "entry": { "$ref": "#/components/schemas/Entry" },
                        "revoked": { "type": "boolean" },
                        "revoked_by": { "type": ["integer", "null"], "description": "seq of the revocation" }
                    }
                },
                "Incident": {
                    "type": "object",
                    "required": ["id", "rule", "severity", "account", "object", "state", "timeline"],
                    "properties": {
                        "id": { "type": "integer" },
                        "rule": { "type": "string" },
                        "severity": { "type": "string" },
                        "account": { "type": "string" },
                        "object": { "type": "string" },
                        "state": { "type": "string", "enum": ["open", "acked", "resolved"] },
                        "resolution": { "type": ["string", "null"] },
                        "evidence": { "type": "object" },
                        "votes": { "type": "array", "description": "approval votes while a quorum is not reached", "items": {
                            "type": "object",
                            "properties": {
                                "action": { "type": "string", "enum": ["approve"] },
                                "who": { "type": "object" },
                                "at": { "type": "string", "format": "date-time" },
                                "needed": { "type": "integer" }
                            }
                        }},
                        "opened_at": { "type": "string", "format": "date-time" },
                        "updated_at": { "type": "string", "format": "date-time" },
                        "timeline": { "type": "array", "items": {
                            "type": "object",
                            "properties": {
                                "at": { "type": "string", "format": "date-time" },
                                "who": { "type": "string" },
                                "action": { "type": "string" }
                            }
                        }}
                    }
                },
                "TimelineRecord": {
                    "type": "object", "required": ["seq", "at", "prev", "hash", "account", "who", "action"],
                    "description": "one event of the timeline chain; the action's own fields (resolution, votes, until…) sit beside `action`",
                    "properties": {
                        "seq": { "type": "integer" },
                        "at": { "type": "string", "format": "date-time" },
                        "prev": { "type": "string", "description": "hash of the previous event" },
                        "hash": { "type": "string" },
                        "incident": { "type": "integer", "description": "absent for account-level events (mutes)" },
                        "account": { "type": "string" },
                        "who": { "type": "string" },
                        "action": { "type": "string", "enum": ["opened", "updated", "paged", "acked", "approved", "resolved", "reminded", "approval_vote", "muted", "unmuted"] }
                    }
                },
                "Account": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "platform": { "type": "string" },
                        "base_url": { "type": "string" },
                        "last_success": { "type": ["string", "null"], "format": "date-time" },
                        "last_error": {
                            "type": ["object", "null"],
                            "properties": { "at": { "type": "string", "format": "date-time" }, "message": { "type": "string" } }
                        },
                        "rate_limit": {
                            "type": ["object", "null"],
                            "properties": {
                                "limit": { "type": ["integer", "null"] },
                                "remaining": { "type": "integer" },
                                "reset": { "type": ["string", "null"], "format": "date-time" }
                            }
                        },
                        "polls": { "type": "integer" },
                        "errors": { "type": "integer" },
                        "open_incidents": { "type": "integer" },
                        "acked_incidents": { "type": "integer" }
                    }
                }
            }
        }
    })
}
