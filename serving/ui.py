"""The shop-floor pages: check one reading (`/`) and the fleet's latest risk (`/fleet`).

Server-rendered templates over the same validation, prediction and log as `POST /predict`.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, render_template, request

from predmaint import schema
from predmaint.auth import secret_matches
from serving.app import BadInput, parse_body, predict_and_log

ui = Blueprint("ui", __name__)

MODE_NAMES = {
    "twf": "tool wear failure",
    "hdf": "heat dissipation failure",
    "pwf": "power failure",
    "osf": "overstrain failure",
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "healthy": {"title": "Healthy", "reading": schema.EXAMPLE_READING},
    "heat": {
        "title": "Poor heat dissipation",
        "reading": schema.EXAMPLE_READING
        | {
            "air_temperature_k": 302.5,
            "process_temperature_k": 310.6,
            "rotational_speed_rpm": 1310,
            "torque_nm": 56.0,
        },
    },
    "power": {
        "title": "Power too high",
        "reading": schema.EXAMPLE_READING | {"rotational_speed_rpm": 1400, "torque_nm": 68.0},
    },
    "overstrain": {
        "title": "Overstrained tool",
        "reading": schema.EXAMPLE_READING | {"tool_wear_min": 215, "torque_nm": 58.0},
    },
}

NOTABLE = 0.1  # the fleet view names a mode or reason only from this probability on
FLEET_WINDOW = 100_000  # the fleet view reads the newest this many predictions, not the whole log
_FORM_FIELDS = [spec for spec in schema.FIELDS if spec.required]


def _label(spec: schema.FieldSpec) -> str:
    name = spec.name.replace("_", " ").removesuffix(" k").removesuffix(" rpm").removesuffix(" nm")
    name = name.removesuffix(" min")
    return f"{name} [{spec.unit}]" if spec.unit else name


def _form_reading(form: dict[str, str]) -> dict[str, Any]:
    """Form text to a JSON reading: numbers where the contract wants numbers, text left for the check."""
    reading: dict[str, Any] = {}
    for spec in _FORM_FIELDS:
        text = form.get(spec.name, "").strip()
        if spec.kind in ("float", "int"):
            try:
                number = float(text)
                reading[spec.name] = int(number) if spec.kind == "int" and number.is_integer() else number
            except ValueError:
                reading[spec.name] = text  # the contract check names it
        else:
            reading[spec.name] = text
    return reading


@ui.route("/", methods=["GET", "POST"])
def index() -> Any:
    """A form for one reading, prefilled from an example, and the explained prediction."""
    model = current_app.extensions["predmaint.models"].current
    example = EXAMPLES.get(request.args.get("example", "healthy"), EXAMPLES["healthy"])
    values: dict[str, Any] = dict(example["reading"])
    answer = error = error_field = None
    status = 200
    token = current_app.config["TOKEN"]
    if request.method == "POST":
        values = {k: v for k, v in request.form.items() if k in schema.FIELD_NAMES}
        try:
            if token is not None and not secret_matches(request.form.get("token"), token):
                raise BadInput("the access token is missing or wrong", 401, "token")
            readings = parse_body(json.dumps(_form_reading(values), allow_nan=True).encode(), is_list=False)
            if model is None:
                raise BadInput("no model is loaded yet; try again in a moment", 503)
            [answer] = predict_and_log(readings, model)
        except BadInput as exc:
            error, error_field, status = exc.message, exc.field, exc.status
    page = render_template(
        "index.html",
        page="predict",
        model=model,
        examples=EXAMPLES,
        fields=[{"name": s.name, "label": _label(s)} for s in _FORM_FIELDS],
        product_types=schema.PRODUCT_TYPES,
        values=values,
        answer=answer,
        error=error,
        error_field=error_field,
        mode_names=MODE_NAMES,
        needs_token=token is not None,
    )
    return page, status


@ui.get("/fleet")
def fleet() -> Any:
    """The newest prediction of each machine from the prediction log, riskiest first."""
    from predmaint.predlog import latest_per_machine, read_predictions

    model = current_app.extensions["predmaint.models"].current
    prediction_log = current_app.config["PREDICTION_LOG"]
    machines: list[dict[str, Any]] = []
    count = 0
    if prediction_log is None:
        empty_reason = "The prediction log is off (serving.prediction_log is null)."
    else:
        prediction_log.flush()
        logged = read_predictions(prediction_log.directory, newest=FLEET_WINDOW)
        count = len(logged)
        empty_reason = f"No predictions logged yet in {prediction_log.directory}."
        for row in latest_per_machine(logged).to_dict("records"):
            modes = {m: row.get(f"p_{m}") for m in MODE_NAMES if row.get(f"p_{m}") is not None}
            top = json.loads(row["top_features"]) if isinstance(row.get("top_features"), str) else []
            likely = max(modes, key=modes.get) if modes else None
            machines.append(
                {
                    "machine_id": row["machine_id"],
                    "timestamp": row["timestamp"].strftime("%Y-%m-%d %H:%M:%S UTC"),
                    "failure_probability": row["failure_probability"],
                    "failure": bool(row["failure"]),
                    "mode": f"{MODE_NAMES[likely]} ({modes[likely]:.0%})"
                    if likely and modes[likely] >= NOTABLE
                    else "none likely",
                    "reason": top[0]["feature"] if top and row["failure_probability"] >= NOTABLE else "–",
                    "model_version": row["model_version"],
                }
            )
    return render_template(
        "fleet.html",
        page="fleet",
        model=model,
        machines=machines,
        predictions=count,
        empty_reason=empty_reason,
    )
