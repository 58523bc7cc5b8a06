"""The OpenAPI 3.0 document of the HTTP server, served at ``/openapi.json``.

Built here as data, beside the code it describes, so that a change to one is
reviewed with the other; ``tests/test_http_api.py`` validates it and runs
generated requests against the real server to keep the two in step.
"""

from __future__ import annotations

from typing import Any

from worker import __version__
from worker.config.settings import Settings

# The rules of worker.queue.jobs.make_job, in JSON Schema terms. Campaign names are
# held to printable ASCII here, a little stricter than the server (which takes
# any printable text), so that every request the schema allows is accepted.
_CAMPAIGN = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": "^[ -~]*[!-~][ -~]*$",
    "description": "The outbound campaign's name, as Ozonetel stores it. "
    "Leading and trailing spaces are dropped.",
    "example": "spring_sale",
}
_PHONE = {
    "type": "string",
    "pattern": "^\\+?[0-9]{5,15}$",
    "description": "The number to delete, exactly as Ozonetel stores it: 5-15 digits "
    "with an optional leading '+'. A string, so that no leading zero is lost.",
    "example": "9845012345",
}
_NAME = {
    "type": "string",
    "maxLength": 255,
    "pattern": "^[ -~]*$",
    "description": "Free text passed through to the vendor (printable).",
    "default": "",
}
_JOB_ID = {
    "type": "string",
    "pattern": "^[A-Za-z0-9._:\\-]{1,64}$",
    "description": "Your id for the job, and its idempotency key: sending an id again "
    "after the job has ended queues nothing and answers `duplicate: true`. "
    "Generated when absent.",
    "example": "crm-42",
}
_URGENT = {
    "type": "boolean",
    "default": False,
    "description": "Queue on the urgent lane: sent before any bulk job.",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_UNAUTHORIZED = {
    **_error("Missing or wrong bearer key."),
    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
}


def _error_with_retry(description: str) -> dict[str, Any]:
    return {
        **_error(description),
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    }


_THROTTLED = _error_with_retry(
    "This producer key made too many requests; try again after Retry-After seconds."
)
_NO_REDIS = {
    **_error("Redis cannot be reached or refused; try again after Retry-After seconds."),
    "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
}


def _schemas(accounts: list[str]) -> dict[str, Any]:
    # The configured accounts are listed: not secret (the metrics carry them
    # too), and it tells a client, and a request generator, what is accepted.
    account = {
        "type": "string",
        "enum": accounts,
        "description": "A configured Ozonetel account; the first one when absent.",
        "example": accounts[0],
    }
    return {
        "DeletionItem": {
            "type": "object",
            "additionalProperties": False,
            "required": ["campaign", "phone"],
            "properties": {
                "campaign": _CAMPAIGN,
                "phone": _PHONE,
                "name": _NAME,
                "id": _JOB_ID,
                "urgent": _URGENT,
                "account": account,
            },
        },
        "DeletionBatch": {
            "type": "object",
            "additionalProperties": False,
            "required": ["items"],
            "description": "Many jobs at once; `account` and `urgent` here apply to every "
            "item that does not set its own. All or nothing: one bad item refuses the batch.",
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"$ref": "#/components/schemas/DeletionItem"},
                },
                "urgent": _URGENT,
                "account": account,
            },
        },
        "Accepted": {
            "type": "object",
            "required": ["jobs"],
            "properties": {
                "jobs": {
                    "type": "array",
                    "description": "One entry per item, in the order sent.",
                    "items": {
                        "type": "object",
                        "required": ["id", "duplicate", "conflict"],
                        "properties": {
                            "id": {"type": "string"},
                            "duplicate": {
                                "type": "boolean",
                                "description": "Nothing new was queued: this id has already "
                                "ended, or the same campaign and phone are already queued.",
                            },
                            "conflict": {
                                "type": "boolean",
                                "description": "Nothing was queued: this id is already "
                                "claimed by another producer, or for another number.",
                            },
                        },
                    },
                },
                "error": {
                    "type": "string",
                    "description": "409 only: which ids conflicted.",
                },
            },
        },
        "JobStatus": {
            "type": "object",
            "required": ["job_id", "account", "state"],
            "properties": {
                "job_id": {"type": "string"},
                "account": {"type": "string"},
                "state": {
                    "type": "string",
                    "enum": ["finished", "unknown"],
                    "description": "`unknown`: queued, in flight, or never seen (a queued "
                    "job has no record of its own until it ends).",
                },
                "outcome": {
                    "type": "string",
                    "nullable": True,
                    "enum": ["deleted", "already_deleted", "dead", None],
                },
                "reason": {
                    "type": "string",
                    "nullable": True,
                    "description": "The dead-letter code when dead, e.g. `no_record`.",
                },
                "message": {"type": "string", "nullable": True, "description": "The vendor's."},
                "attempts": {"type": "integer", "nullable": True, "minimum": 0},
                "finished_at": {"type": "string", "nullable": True, "format": "date-time"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "errors": {
                    "type": "array",
                    "description": "Why each refused item was refused (422 only).",
                    "items": {
                        "type": "object",
                        "required": ["index", "reason"],
                        "properties": {
                            "index": {"type": "integer", "minimum": 0},
                            "reason": {"type": "string"},
                        },
                    },
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["ok"],
            "properties": {"ok": {"type": "boolean"}, "error": {"type": "string"}},
        },
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The document, with this server's accounts and limits in it."""
    max_body_bytes, max_items = settings.http_max_body_bytes, settings.http_max_items
    schemas = _schemas(list(settings.accounts))
    bearer: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    # /metrics and /openapi.json ask for the ops key only when one is set.
    ops: list[dict[str, list[str]]] = [{"opsKey": []}] if settings.ops_key else []
    ops_refusals = {"401": _UNAUTHORIZED} if settings.ops_key else {}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "ozonetel-purge",
            "version": __version__,
            "description": "Queue deletions from Ozonetel outbound campaigns and follow "
            "them to their outcome; plus health, readiness and metrics for operators.",
        },
        "paths": {
            "/v1/deletions": {
                "post": {
                    "operationId": "enqueueDeletions",
                    "summary": "Queue one deletion, or a batch",
                    "security": bearer,
                    "requestBody": {
                        "required": True,
                        "description": f"At most {max_body_bytes} bytes.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/DeletionItem"},
                                        {"$ref": "#/components/schemas/DeletionBatch"},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json("Queued (or recognised as duplicates).", "Accepted"),
                        "400": _error("The body is not JSON, or is nested too deeply."),
                        "401": _UNAUTHORIZED,
                        "408": _error("The body did not arrive in time."),
                        "409": _json(
                            "Some ids are already claimed by another producer or for another "
                            "number: those items were not queued, the others were.",
                            "Accepted",
                        ),
                        "413": _error(
                            f"The body is larger than {max_body_bytes} bytes, or holds more "
                            f"than {max_items} items."
                        ),
                        "422": _error(
                            "Some items are invalid, or name an account this key may not "
                            "use; nothing was queued."
                        ),
                        "429": _error_with_retry(
                            "This producer key made too many requests, or sent too many "
                            "items; try again after Retry-After seconds."
                        ),
                        "503": _NO_REDIS,
                    },
                }
            },
            "/v1/deletions/{id}": {
                "get": {
                    "operationId": "getDeletion",
                    "summary": "How a job ended, if it has",
                    "security": bearer,
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": _JOB_ID},
                        {
                            "name": "account",
                            "in": "query",
                            "required": False,
                            "schema": schemas["DeletionItem"]["properties"]["account"],
                        },
                    ],
                    "responses": {
                        "200": _json("The job's status.", "JobStatus"),
                        "401": _UNAUTHORIZED,
                        "422": _error("Not a valid job id, or an account unknown to this key."),
                        "429": _THROTTLED,
                        "503": _NO_REDIS,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness: the process answers",
                    "security": [],
                    "responses": {"200": _json("Alive.", "Health")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness: Redis answers",
                    "security": [],
                    "responses": {
                        "200": _json("Ready.", "Health"),
                        "503": _json("Redis does not answer.", "Health"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics, per account, cluster-wide",
                    "security": ops,
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format 0.0.4.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **ops_refusals,
                        "503": _NO_REDIS,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A producer key (OZP_PRODUCER_KEYS).",
                },
                "opsKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The operators' key (OZP_OPS_KEY), when one is set.",
                },
            },
            "schemas": schemas,
        },
    }
