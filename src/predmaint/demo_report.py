"""The demo's HTML report: one self-contained page (inline SVG, no scripts) a person can read at a glance."""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

WIDTH, HEIGHT, PAD = 900, 240, 40
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _x(step: float, first: int, last: int) -> float:
    return PAD + (step - first) / max(last - first, 1) * (WIDTH - 2 * PAD)


def _marker(step: int | None, first: int, last: int, label: str, colour: str) -> str:
    if step is None:
        return ""
    x = _x(step, first, last)
    return (
        f'<line x1="{x:.1f}" y1="{PAD / 2}" x2="{x:.1f}" y2="{HEIGHT - PAD}" stroke="{colour}" '
        f'stroke-dasharray="4 3"/><text x="{x + 4:.1f}" y="{PAD / 2 + 10}" font-size="11" '
        f'fill="{colour}">{escape(label)}</text>'
    )


def probability_chart(answers: pd.DataFrame, onset: int, takeover: int | None) -> str:
    """Failure probability per machine over time (mean over 10 steps): one small panel each."""
    first, last = int(answers["step"].min()), int(answers["step"].max())
    width, height, pad = 210, 70, 4
    cells = []
    for machine, rows in answers.sort_values("step").groupby("machine_id"):
        smooth = rows["probability"].rolling(10, min_periods=1).mean()

        def x(step: float) -> float:
            return pad + (step - first) / max(last - first, 1) * (width - 2 * pad)

        points = " ".join(
            f"{x(step):.1f},{height - pad - p * (height - 2 * pad):.1f}"
            for step, p in zip(rows["step"], smooth, strict=True)
        )
        marks = "".join(
            f'<line x1="{x(step):.1f}" y1="0" x2="{x(step):.1f}" y2="{height}" stroke="{colour}" '
            'stroke-dasharray="3 2"/>'
            for step, colour in ((onset, "#d62728"), (takeover, "#2ca02c"))
            if step is not None
        )
        cells.append(
            f'<figure><svg width="{width}" height="{height}" role="img" class="machine" '
            f'aria-label="failure probability of {escape(str(machine))}">'
            f'<rect width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>{marks}'
            f'<polyline points="{points}" fill="none" stroke="#1f77b4" stroke-width="1.2"/></svg>'
            f"<figcaption>{escape(str(machine))}</figcaption></figure>"
        )
    return f'<div id="probabilities" class="grid">{"".join(cells)}</div>'


def version_timeline(answers: pd.DataFrame) -> str:
    """Which model version answered at each step, as a coloured band."""
    first, last = int(answers["step"].min()), int(answers["step"].max())
    per_step = answers.groupby("step")["version"].agg(lambda v: v.mode().iloc[0])
    versions = sorted(per_step.unique(), key=lambda v: (len(str(v)), str(v)))
    colours = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(versions)}
    width = (WIDTH - 2 * PAD) / max(last - first + 1, 1)
    bands = "".join(
        f'<rect x="{_x(step, first, last):.1f}" y="10" width="{width + 0.5:.2f}" height="24" '
        f'fill="{colours[version]}"/>'
        for step, version in per_step.items()
    )
    legend = "".join(
        f'<text x="{PAD + 110 * i}" y="52" font-size="12" fill="{colours[v]}">'
        f"■ version {escape(str(v))}</text>"
        for i, v in enumerate(versions)
    )
    return (
        f'<svg id="versions" width="{WIDTH}" height="60" role="img" aria-label="model versions">'
        f"{bands}{legend}</svg>"
    )


def f1_bars(before: float | None, after: float | None) -> str:
    """Live F1 of the champion before and after, on the drifted readings."""
    bars = []
    for i, (label, value) in enumerate((("before", before), ("after", after))):
        height = (value or 0) * 150
        x = 60 + i * 120
        bars.append(
            f'<rect x="{x}" y="{170 - height:.1f}" width="70" height="{height:.1f}" fill="{PALETTE[i * 2]}"/>'
            f'<text x="{x + 35}" y="{165 - height:.1f}" font-size="13" text-anchor="middle">'
            f"{'–' if value is None else f'{value:.2f}'}</text>"
            f'<text x="{x + 35}" y="188" font-size="12" text-anchor="middle">{label}</text>'
        )
    return f'<svg id="f1" width="320" height="200" role="img" aria-label="live F1">{"".join(bars)}</svg>'


def checks_table(checks: list[dict[str, Any]]) -> str:
    """Each scheduled check: decision, reason and the p-value of every monitored feature."""
    if not checks:
        return "<p>No drift check ran.</p>"
    features = list(checks[0]["p_values"])
    head = "".join(f"<th>{escape(name)}</th>" for name in features)
    rows = []
    for check in checks:
        cells = "".join(
            f'<td class="{"low" if check["p_values"][name] < 0.05 / len(features) else ""}">'
            f"{check['p_values'][name]:.2g}</td>"
            for name in features
        )
        rows.append(
            f"<tr><td>{check['at_step']}</td><td>{check['drift']}</td><td>{check['retrain']}</td>"
            f"<td class='reason'>{escape(check['reason'])}</td>{cells}</tr>"
        )
    return (
        f'<table id="checks"><tr><th>at step</th><th>drift</th><th>retrain</th><th>reason</th>{head}</tr>'
        f"{''.join(rows)}</table>"
    )


def render(summary: dict[str, Any], answers: pd.DataFrame) -> str:
    """The report page for a demo run."""
    after = summary["champion_after"]
    takeover = None
    if after != summary["champion_before"] and len(answers):
        newer = answers[answers["version"] == after]
        takeover = int(newer["step"].min()) if len(newer) else None
    facts = [
        ("champion", f"v{summary['champion_before']} → v{after}"),
        ("drift detected", "yes" if summary["drift_detected"] else "no"),
        ("retraining runs", str(summary["retrain_runs"])),
        ("requests", f"{summary['requests']:,} ({summary['failed_requests']} failed)"),
        ("scenario", summary["scenario"]),
        ("whole run", f"{summary['seconds']:.0f} s"),
    ]
    cards = "".join(f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in facts)
    promotion = summary.get("promotion") or {}
    first_step, last_step = int(answers["step"].min()), int(answers["step"].max())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>predmaint demo report</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}}
.cards{{display:flex;gap:1em;flex-wrap:wrap}}
.card{{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:120px}}
.card b{{display:block;font-size:1.3em}} .card span{{color:#666;font-size:.85em}}
table{{border-collapse:collapse;font-size:.8em}} td,th{{border:1px solid #ddd;padding:.2em .4em}}
td.low{{background:#fdd}} td.reason{{max-width:320px}} .scroll{{overflow-x:auto}}
.grid{{display:grid;grid-template-columns:repeat(4,220px);gap:.3em}} figure{{margin:0}}
figcaption{{font-size:.75em;color:#666}}
</style></head><body>
<h1>predmaint demo</h1>
<div class="cards">{cards}</div>
<h2>Failure probability per machine</h2>
<p>Every answer of the service (mean over 10 steps), 0 to 1, one panel per machine; dashed lines:
the drift starts (red), the new champion answers (green); steps {first_step}–{last_step}.</p>
{probability_chart(answers, summary["onset_step"], takeover)}
<h2>Model version answering</h2>
{version_timeline(answers)}
<p>Gate: {escape(str(promotion.get("reason", "no retraining ran")))}</p>
<h2>Live F1 on the drifted readings</h2>
{f1_bars(summary["live_f1_before"], summary["live_f1_after"])}
<h2>Scheduled drift checks</h2>
<p>p-values per monitored feature; red: below the Bonferroni-corrected 0.05.</p>
<div class="scroll">{checks_table(summary["checks"])}</div>
</body></html>
"""
