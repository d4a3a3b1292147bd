"""The OpenAPI 3.0 description of the service, generated from the reading contract."""

from __future__ import annotations

from typing import Any

from predmaint import schema

UTC_ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)$"


def reading_schema() -> dict[str, Any]:
    """JSON Schema of one reading, from `predmaint.schema.FIELDS`."""
    properties: dict[str, Any] = {}
    for spec in schema.FIELDS:
        description = spec.description + (f" Unit: {spec.unit}." if spec.unit else "")
        if spec.kind == "str":
            prop = {"type": "string", "minLength": 1, "maxLength": schema.MACHINE_ID_MAX_LENGTH}
            prop["pattern"] = schema.MACHINE_ID_PATTERN
        elif spec.kind == "category":
            prop = {"type": "string", "enum": list(schema.PRODUCT_TYPES)}
        elif spec.kind == "timestamp":
            prop = {"type": "string", "format": "date-time", "pattern": UTC_ISO_PATTERN}
        elif spec.kind == "flag":
            prop = {"type": "integer", "enum": [0, 1]}
        elif spec.kind == "int":
            prop = {"type": "integer", "minimum": int(spec.minimum), "maximum": int(spec.maximum)}
        else:
            prop = {"type": "number", "minimum": spec.minimum, "maximum": spec.maximum}
        properties[spec.name] = {**prop, "description": description}
    return {
        "type": "object",
        "properties": properties,
        "required": list(schema.REQUIRED_FIELDS),
        "additionalProperties": False,
        "example": schema.EXAMPLE_READING,
    }


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("Error")}


def openapi_document(max_batch: int, max_body_bytes: int, token_required: bool = False) -> dict[str, Any]:
    """The API as OpenAPI 3.0.3, with the configured batch and body limits (and token, if any)."""
    prediction = {
        "type": "object",
        "required": ["machine_id", "seq", "failure_probability", "failure", "failure_modes", "model_version"],
        "properties": {
            "machine_id": {"type": "string"},
            "seq": {"type": "integer"},
            "failure_probability": {"type": "number", "minimum": 0, "maximum": 1},
            "failure": {
                "type": "boolean",
                "description": "failure_probability at or above the model's threshold",
            },
            "failure_modes": {
                "type": "object",
                "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
                "description": "Probability of each failure mode (twf, hdf, pwf, osf).",
            },
            "top_features": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["feature", "contribution"],
                    "properties": {"feature": {"type": "string"}, "contribution": {"type": "number"}},
                },
                "description": "The features pushing this prediction hardest towards failure.",
            },
            "model_version": {"type": "string"},
        },
    }
    bad_request = {
        "400": _error("The body is empty, not JSON, or an empty list."),
        "413": _error(f"The body exceeds {max_body_bytes} bytes or holds more than {max_batch} readings."),
        "415": _error("The content type is not application/json."),
        "422": _error("A reading breaks the data contract; `field` names the offending field."),
        "503": _error("No model is loaded yet."),
    }
    if token_required:
        bad_request["401"] = _error("No `Authorization: Bearer <token>` header, or a wrong token.")
    plain_ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "predmaint prediction service",
            "version": "1.0.0",
            "description": "Explained machine-failure predictions for sensor readings (AI4I 2020 contract).",
        },
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict failure for one reading or a list of readings",
                    "operationId": "predict",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Reading"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Reading"},
                                            "minItems": 1,
                                            "maxItems": max_batch,
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {"description": "One prediction per reading", "content": _json("Predictions")}
                    }
                    | bad_request,
                }
                | ({"security": [{"bearer": []}]} if token_required else {})
            },
            "/health": {
                "get": {"summary": "The process is alive", "operationId": "health", "responses": plain_ok}
            },
            "/ready": {
                "get": {
                    "summary": "A model is loaded",
                    "operationId": "ready",
                    "responses": plain_ok | {"503": _error("No model is loaded yet.")},
                }
            },
            "/model": {
                "get": {
                    "summary": "Name, version, lineage and test metrics of the model in service",
                    "operationId": "model",
                    "responses": plain_ok | {"503": _error("No model is loaded yet.")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {"200": {"description": "Exposition format", "content": {"text/plain": {}}}},
                }
            },
        },
        "components": {
            "schemas": {
                "Reading": reading_schema(),
                "Predictions": {
                    "type": "object",
                    "required": ["predictions"],
                    "properties": {"predictions": {"type": "array", "items": prediction}},
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
                },
            }
        }
        | ({"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}} if token_required else {}),
    }
