"""The report page: one self-contained HTML file (inline CSS, plots as data URIs, no scripts).

Self-contained so it can be mailed, archived next to the results, or opened
from disk with no server and no network.
"""
from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

import numpy as np

from outputs.report import plots, summary
from outputs.report.summary import NO_PERSON, JobMessages

STRIP_ROW_SECONDS = 10  # one strip row per 10 s of video keeps rows comparable across jobs
STATE_LABELS = {NO_PERSON: "nobody"}
# What a frame's timestamp marks the end of: its rate is that stage's throughput.
STAGE_NAMES = {"decoded": "Decode", "detected": "Detect", "published": "Track + publish"}

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       background: #f4f5f7; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 24px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 0 0 10px; }
.subtitle { color: #666; margin: 0 0 18px; word-break: break-all; }
section, .card { background: #fff; border: 1px solid #dde0e4; border-radius: 8px; padding: 16px;
                 margin-bottom: 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 16px; }
.cards .card { margin-bottom: 0; }
.summary { margin-bottom: 16px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eef0f2; vertical-align: top; }
th { font-weight: 500; color: #555; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
thead th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: #888; }
.status-ok { color: #00754f; font-weight: 600; }
.status-error { color: #b3261e; font-weight: 600; }
.error { color: #b3261e; white-space: pre-wrap; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px;
          vertical-align: -1px; }
.strip-row { display: flex; align-items: center; gap: 8px; margin-bottom: 4px; }
.strip-label { width: 96px; flex: none; font-size: 12px; color: #666; font-variant-numeric: tabular-nums; }
.strip { flex: 1; display: grid; height: 26px; }
.cell { min-width: 0; }
.legend { display: flex; flex-wrap: wrap; gap: 16px; margin-top: 10px; font-size: 13px; }
.note { color: #666; font-size: 13px; margin: 0 0 10px; }
img { display: block; max-width: 100%; height: auto; margin: 0 auto 8px; }
"""


def build_report(messages: list[dict]) -> str:
    """The report page for one job's public messages (job_start, frames, job_end), as HTML text."""
    job = summary.split_job(messages)
    title = f"posebus report: job {job.id}"
    source = job.start["source"] if job.start else "(source not opened)"
    body = "\n".join([
        f"<h1>{escape(title)}</h1>",
        f'<p class="subtitle">{escape(source)}</p>',
        _summary_cards(job),
        _coverage_section(job),
        _people_section(job),
        _angles_section(job),
    ])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{_state_css()}{CSS}</style></head>"
            f"<body><main>\n{body}\n</main></body></html>\n")


def write_report(messages: list[dict], path: str | Path) -> Path:
    """Write ``build_report(messages)`` to ``path``; returns the path."""
    path = Path(path)
    path.write_text(build_report(messages), encoding="utf-8")
    return path


def read_messages(path: str | Path) -> list[dict]:
    """The messages of a results file written by ``launch.py --out`` (one JSON object per line)."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


# --- summary ------------------------------------------------------------------

def _summary_cards(job: JobMessages) -> str:
    return (f'<div class="cards summary">{_card("Job", _job_rows(job))}'
            f'{_card("Coverage of the primary subject", _coverage_table(job.frames))}'
            f'{_card("Speed", _speed_table(job.frames))}</div>')


def _card(heading: str, content: str) -> str:
    return f'<div class="card"><h2>{escape(heading)}</h2>{content}</div>'


def _job_rows(job: JobMessages) -> str:
    start, end = job.start or {}, job.end
    rows = [
        ("Status", _status(end)),
        ("Frames", _frames_and_duration(len(job.frames), start.get("fps"))),
        ("Frames in container", _or_dash(start.get("frame_count"))),
        ("Resolution", f"{start['width']} × {start['height']}" if start else "—"),
        ("Frame rate", f"{start['fps']:.2f}".rstrip("0").rstrip(".") + " fps" if start else "—"),
        ("Detector", escape(start.get("detector", "—"))),
        ("People seen", _tracks(len(summary.track_ids(job.frames)))),
    ]
    if end and end.get("error"):
        rows.append(("Error", f'<span class="error">{escape(end["error"])}</span>'))
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _frames_and_duration(frames: int, fps: float | None) -> str:
    return f"{frames} ({frames / fps:.1f} s of video)" if fps else str(frames)


def _tracks(count: int) -> str:
    return f"{count} track" if count == 1 else f"{count} tracks"


def _status(end: dict | None) -> str:
    if end is None:
        return '<span class="status-error">no job_end (run cut short)</span>'
    return f'<span class="status-{end["status"]}">{escape(end["status"])}</span>'


def _or_dash(value) -> str:
    return "—" if value is None else escape(str(value))


def _coverage_table(frames: list[dict]) -> str:
    counts = summary.coverage(frames)
    total = max(len(frames), 1)
    rows = "".join(
        f'<tr><th>{_swatch(state)}{_label(state)}</th><td class="num">{n}</td>'
        f'<td class="num">{100 * n / total:.1f}%</td></tr>' for state, n in counts.items())
    return f'<table><thead><tr><th>state</th><th>frames</th><th>share</th></tr></thead>{rows}</table>'


def _speed_table(frames: list[dict]) -> str:
    rates = [(name, summary.stage_rate(frames, stage)) for stage, name in STAGE_NAMES.items()]
    rates.append(("End to end", summary.end_to_end_rate(frames)))
    rate_rows = "".join(f'<tr><th>{name}</th><td class="num" colspan="3">{_fps(r)}</td></tr>'
                        for name, r in rates)
    spans = [("decoded", "detected"), ("detected", "published"), ("decoded", "published")]
    latency_rows = "".join(_latency_row(f"{a} → {b}", summary.latency(frames, a, b)) for a, b in spans)
    return (f'<table><thead><tr><th>throughput</th><th colspan="3" class="num">frames/s</th></tr></thead>'
            f'{rate_rows}<thead><tr><th>latency (ms)</th><th class="num">p50</th><th class="num">p95</th>'
            f'<th class="num">max</th></tr></thead>{latency_rows}</table>')


def _fps(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1f}"


def _latency_row(name: str, figures: summary.Latency | None) -> str:
    cells = [figures.p50, figures.p95, figures.max] if figures else [None] * 3
    values = "".join(f'<td class="num">{"—" if v is None else f"{1000 * v:.0f}"}</td>' for v in cells)
    return f"<tr><th>{name}</th>{values}</tr>"


# --- coverage strip -----------------------------------------------------------

def _coverage_section(job: JobMessages) -> str:
    per_row = _strip_row_length(job)
    rows = [job.frames[i:i + per_row] for i in range(0, len(job.frames), per_row)]
    fps = job.start["fps"] if job.start else None
    strip = "".join(_strip_row(row, per_row, fps) for row in rows) or '<p class="note">No frames.</p>'
    legend = "".join(f"<span>{_swatch(s)}{_label(s)}</span>" for s in plots.STATE_COLOURS)
    return (f"<section><h2>Coverage</h2><p class=\"note\">One cell per frame, coloured by the state of "
            f"the primary subject (the first person in the frame); {STRIP_ROW_SECONDS} s per row.</p>"
            f'{strip}<div class="legend">{legend}</div></section>')


def _strip_row_length(job: JobMessages) -> int:
    fps = job.start["fps"] if job.start else 0
    return max(1, round(fps * STRIP_ROW_SECONDS)) if fps > 0 else 300


def _strip_row(frames: list[dict], per_row: int, fps: float | None) -> str:
    first = frames[0]["index"]
    when = f"{first / fps // 60:.0f}:{first / fps % 60:04.1f} · " if fps else ""
    cells = "".join(_cell(f) for f in frames)
    return (f'<div class="strip-row"><span class="strip-label">{when}#{first}</span>'
            f'<div class="strip" style="grid-template-columns: repeat({per_row}, 1fr)">{cells}</div></div>')


def _cell(frame: dict) -> str:
    state = summary.primary_state(frame)
    who = f", track {frame['people'][0]['track_id']}" if frame["people"] else ""
    return f'<span class="cell {state}" title="frame {frame["index"]}: {_label(state)}{who}"></span>'


def _swatch(state: str) -> str:
    return f'<span class="swatch {state}"></span>'


def _label(state: str) -> str:
    return STATE_LABELS.get(state, state)


def _state_css() -> str:
    return "".join(f".{state} {{ background: {colour}; }}\n" for state, colour in plots.STATE_COLOURS.items())


# --- plots --------------------------------------------------------------------

def _people_section(job: JobMessages) -> str:
    index = np.array([f["index"] for f in job.frames])
    counts = np.array([len(f["people"]) for f in job.frames])
    image = _img(plots.people_count_png(index, counts), "people per frame")
    return f"<section><h2>People per frame</h2>{image}</section>"


def _angles_section(job: JobMessages) -> str:
    keys = summary.angle_keys(job)
    tracks = summary.track_ids(job.frames)
    images = "".join(_img(plots.angles_png(summary.track_series(job.frames, t, keys)), f"joint angles, track {t}")
                     for t in tracks)
    return (f'<section><h2>Joint angles per track</h2><p class="note">Degrees over frame index; 180° is a '
            f"straight knee, hip, elbow or spine, 0° an arm along the trunk at the shoulder. Tinted bands "
            f"mark frames where the track was predicted, interpolated or held rather than observed.</p>"
            f"{images or '<p class=note>Nobody was tracked.</p>'}</section>")


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
