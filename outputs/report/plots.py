"""Matplotlib figures of one job, rendered to PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so
nothing is registered in pyplot's global figure list and no GUI backend is
ever touched: the Agg canvas is all a headless server needs.
"""
from __future__ import annotations

import io
import re

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from outputs.report.summary import NO_PERSON, TrackSeries

# Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
STATE_COLOURS = {
    "observed": "#009E73",
    "predicted": "#E69F00",
    "interpolated": "#56B4E9",
    "held": "#D55E00",
    NO_PERSON: "#D0D0D0",
}
SIDE_STYLES = {"left": {"color": "#0072B2"}, "right": {"color": "#CC79A7"}, None: {"color": "#333333"}}
DPI = 100
PANEL_COLUMNS = 3


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def joint_of(angle_key: str) -> tuple[str, str | None]:
    """``leftKnee`` -> (``knee``, ``left``); keys without a side (``spine``) -> (key, None)."""
    sided = re.fullmatch(r"(left|right)([A-Z]\w*)", angle_key)
    return (sided[2].lower(), sided[1]) if sided else (angle_key, None)


def panels(angle_keys: list[str]) -> dict[str, list[tuple[str, str | None]]]:
    """Angle keys grouped by joint, so left and right of one joint share a panel."""
    grouped: dict[str, list[tuple[str, str | None]]] = {}
    for key in angle_keys:
        joint, side = joint_of(key)
        grouped.setdefault(joint, []).append((key, side))
    return grouped


def angles_png(series: TrackSeries) -> bytes:
    """One track's joint angles over time: a panel per joint, left and right overlaid."""
    grouped = panels(list(series.angles))
    rows = max(1, -(-len(grouped) // PANEL_COLUMNS))
    figure = Figure(figsize=(12, 0.4 + 2.6 * rows), layout="constrained")
    axes = figure.subplots(rows, PANEL_COLUMNS, squeeze=False).ravel()
    for ax, (joint, keys) in zip(axes, grouped.items()):
        _angle_panel(ax, series, joint, keys)
        _frame_axis(ax, series.index)
    for ax in axes[len(grouped):]:
        ax.set_axis_off()
    # One legend for the figure: per-panel legends would cover the curves.
    entries = {line.get_label(): line for ax in axes for line in ax.get_lines()}
    entries.update({state: Patch(color=STATE_COLOURS[state], alpha=0.35)
                    for state in dict.fromkeys(series.states) if state not in ("observed", None)})
    figure.legend(entries.values(), entries.keys(), loc="outside upper right", ncols=len(entries), fontsize=9,
                  frameon=False)
    figure.suptitle(f"Track {series.track_id}", fontsize=12, x=0.01, ha="left", y=0.995, va="top")
    return png(figure)


def _angle_panel(ax, series: TrackSeries, joint: str, keys: list[tuple[str, str | None]]) -> None:
    _shade_unobserved(ax, series)
    for key, side in keys:
        ax.plot(series.index, series.angles[key], label=side or key, linewidth=1.4, **SIDE_STYLES[side])
    ax.set_title(joint.capitalize(), fontsize=10, loc="left")
    ax.set_ylim(0, 185)
    ax.set_yticks([0, 45, 90, 135, 180])
    ax.grid(True, alpha=0.3)
    if all(np.isnan(series.angles[key]).all() for key, _ in keys):
        ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="#888888")


def _shade_unobserved(ax, series: TrackSeries) -> None:
    """Tint each run of frames the tracker filled in, in its state's colour."""
    for first, last, state in state_runs(series.index, series.states):
        if state not in ("observed", None):
            ax.axvspan(first - 0.5, last + 0.5, color=STATE_COLOURS[state], alpha=0.35, linewidth=0)


def state_runs(index: np.ndarray, states: list[str | None]) -> list[tuple[int, int, str | None]]:
    """(first frame, last frame, state) for each run of consecutive frames in one state."""
    runs: list[tuple[int, int, str | None]] = []
    for i, state in zip(index.tolist(), states):
        if runs and runs[-1][2] == state and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i, state)
        else:
            runs.append((i, i, state))
    return runs


def _frame_axis(ax, index: np.ndarray) -> None:
    """The job's whole frame range, on every plot, so plots line up with each other and the strip."""
    if len(index):
        ax.set_xlim(index.min() - 0.5, index.max() + 0.5)
    ax.set_xlabel("frame", fontsize=9)


def people_count_png(index: np.ndarray, counts: np.ndarray) -> bytes:
    """People in each frame, whatever their state."""
    figure = Figure(figsize=(12, 1.8), layout="constrained")
    ax = figure.subplots()
    ax.step(index, counts, where="mid", color="#333333", linewidth=1.4)
    ax.fill_between(index, counts, step="mid", color="#009E73", alpha=0.25)
    ax.set_ylim(0, max(1, int(counts.max(initial=0))) + 0.5)
    ax.yaxis.get_major_locator().set_params(integer=True)
    _frame_axis(ax, index)
    ax.set_ylabel("people", fontsize=9)
    ax.grid(True, alpha=0.3)
    return png(figure)
