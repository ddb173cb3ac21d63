"""The answers every operation can give because of app-wide rules, added to the OpenAPI document.

Routes document their own outcomes; what the middlewares and handlers add to every route
(413, 414, 431, the 422 shape of this API, 400 for unreadable bodies, and with API keys 401/403/429)
is written into every operation here, so routes added later are documented (and fuzzed
against that documentation) without each having to repeat it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.api.access import PUBLIC_PATHS

PROBLEM = {"$ref": "#/components/schemas/Problem"}
PROBLEM_SCHEMA = {
    "title": "Problem",
    "type": "object",
    "properties": {"detail": {"type": "string", "title": "Detail"}},
    "required": ["detail"],
}
VALIDATION_PROBLEM_SCHEMA = {
    "title": "ValidationProblem",
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "every problem, in one sentence"},
        "errors": {
            "type": "array",
            "items": {"type": "object"},
            "description": "each problem: loc, msg, type",
        },
    },
    "required": ["detail"],
}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _answer(description: str, schema: dict[str, Any] = PROBLEM, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def document_app_wide_answers(
    schema: dict[str, Any],
    *,
    max_body_bytes: int,
    max_header_bytes: int,
    keys: bool,
    rate_limited: bool,
) -> dict[str, Any]:
    """`schema` with the app-wide answers in every operation (changed in place, returned)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.setdefault("Problem", PROBLEM_SCHEMA)
    schemas["ValidationProblem"] = VALIDATION_PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if keys:
        components.setdefault("securitySchemes", {})["apiKey"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "an API key from `akave-gateway apikey new`",
        }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            responses["413"] = _answer(f"the request body is larger than {max_body_bytes} bytes")
            responses["414"] = _answer(f"the URL is longer than {max_header_bytes} bytes")
            responses["431"] = _answer(f"the request headers exceed {max_header_bytes} bytes")
            if "422" in responses or operation.get("parameters") or "requestBody" in operation:
                responses["422"] = _answer(
                    "invalid parameters or body",
                    {"$ref": "#/components/schemas/ValidationProblem"},
                )
            if "requestBody" in operation:
                responses.setdefault("400", _answer("the body could not be read (e.g. not UTF-8)"))
            if keys and path not in PUBLIC_PATHS:
                operation["security"] = [{"apiKey": []}]
                responses["401"] = _answer(
                    "no, a malformed or an unknown API key",
                    headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
                )
                responses["403"] = _answer("the API key lacks the scope this needs")
                if rate_limited:
                    responses["429"] = _answer(
                        "the API key's rate limit is used up",
                        headers={"Retry-After": {"schema": {"type": "integer"}, "required": True}},
                    )
    return schema


def install(
    app: FastAPI, *, max_body_bytes: int, max_header_bytes: int, keys: bool, rate_limited: bool
) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_app_wide_answers(
                FastAPI.openapi(app),
                max_body_bytes=max_body_bytes,
                max_header_bytes=max_header_bytes,
                keys=keys,
                rate_limited=rate_limited,
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
