"""The STSP report: Markdown and a self-contained HTML page (inline PNG figures), paper Table 3 beside ours."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from models.metrics import PAPER_TABLE3
from models.report import figure_png, html_page, pyplot
from schemas.tables import SENTIMENTS

ORDER = ("t2t", "t2s", "s2t", "s2s")
ARROWS = {"t2t": "T→T", "t2s": "T→S", "s2t": "S→T", "s2s": "S→S"}


def _pct(value: float) -> str:
    return "–" if value != value else f"{value:.2f}"


def _scorer_note(scorers: Mapping[str, str], paper: Mapping[str, bool]) -> str:
    lines = []
    for direction in ORDER:
        if direction in scorers:
            tag = "" if paper.get(direction) else " — **not the paper's classifier**"
            lines.append(f"- {ARROWS[direction]}: scored by `{scorers[direction]}`{tag}")
    return "\n".join(lines)


def markdown_report(
    metrics: Sequence[Mapping[str, Any]],
    scorers: Mapping[str, str],
    paper: Mapping[str, bool],
    title: str,
) -> str:
    """Per-direction accuracy (mean ± std over seeds, 95% CI), per-dataset rows, and Table 3."""
    overall = {m["direction"]: m for m in metrics if m["dataset"] == "all"}
    directions = [d for d in ORDER if d in overall]
    lines = [f"# {title}", "", _scorer_note(scorers, paper), ""]
    lines += ["## Accuracy (this run)", ""]
    lines += ["| direction | dataset | n | accuracy (mean ± std over seeds) | 95% CI (pooled) |"]
    lines += ["|---|---|---|---|---|"]
    for m in metrics:
        if m["seed"] is None:
            lines.append(
                f"| {ARROWS[m['direction']]} | {m['dataset']} | {m['n']} | "
                f"{_pct(m['mean'])} ± {_pct(m['std'])} | {_pct(m['ci_low'])}–{_pct(m['ci_high'])} |"
            )
    lines += ["", "## Paper Table 3 beside this run", ""]
    lines += [
        "| model | " + " | ".join(ARROWS[d] for d in ORDER) + " |",
        "|---|" + "---|" * len(ORDER),
    ]
    for name, row in PAPER_TABLE3.items():
        lines.append(f"| {name} (paper) | " + " | ".join(f"{row[d]:.2f}" for d in ORDER) + " |")
    ours = [(_pct(overall[d]["mean"]) if d in overall else "–") for d in ORDER]
    lines.append("| **this run** | " + " | ".join(ours) + " |")
    lines += ["", "## Confusion matrices (rows: reference, columns: predicted)", ""]
    for d in directions:
        cm = overall[d]["confusion"]
        lines += [
            f"**{ARROWS[d]}**",
            "",
            "| | " + " | ".join(SENTIMENTS) + " |",
            "|---|---|---|---|",
        ]
        for i, ref in enumerate(SENTIMENTS):
            lines.append(f"| {ref} | " + " | ".join(str(cm[i * 3 + j]) for j in range(3)) + " |")
        lines.append("")
    return "\n".join(lines)


def _figures(
    metrics: Sequence[Mapping[str, Any]], generations: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    plt = pyplot()
    figures = []
    overall = {m["direction"]: m for m in metrics if m["dataset"] == "all"}
    directions = [d for d in ORDER if d in overall]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    xs = range(len(directions))
    means = [overall[d]["mean"] for d in directions]
    low = [overall[d]["mean"] - overall[d]["ci_low"] for d in directions]
    high = [overall[d]["ci_high"] - overall[d]["mean"] for d in directions]
    ax.bar(xs, means, yerr=[low, high], capsize=4, color="#4C78A8", label="this run (95% CI)")
    for name, marker in (("Spirit LM Expressive", "D"), ("Spirit LM Base", "o")):
        ax.scatter(
            xs,
            [PAPER_TABLE3[name][d] for d in directions],
            marker=marker,
            color="#E45756",
            zorder=3,
            label=f"{name} (paper)",
        )
    ax.axhline(1 / 3, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(list(xs), [ARROWS[d] for d in directions])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="upper right")
    figures.append(("STSP accuracy by direction, with paper Table 3", figure_png(fig)))

    fig, axes = plt.subplots(1, max(1, len(directions)), figsize=(3 * max(1, len(directions)), 2.9))
    axes = axes if len(directions) > 1 else [axes]
    for ax, d in zip(axes, directions, strict=False):
        cm = [overall[d]["confusion"][i * 3 : i * 3 + 3] for i in range(3)]
        ax.imshow(cm, cmap="Blues")
        for i in range(3):
            for j in range(3):
                ax.text(j, i, str(cm[i][j]), ha="center", va="center", fontsize=9)
        ax.set_xticks(range(3), [s[:3] for s in SENTIMENTS])
        ax.set_yticks(range(3), [s[:3] for s in SENTIMENTS])
        ax.set_title(ARROWS[d])
        ax.set_xlabel("predicted")
    axes[0].set_ylabel("reference")
    figures.append(("Confusion matrices", figure_png(fig)))

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.9))
    for d in directions:
        left.hist(
            [g["new_tokens"] for g in generations if g["direction"] == d],
            bins=20,
            alpha=0.6,
            label=ARROWS[d],
        )
    left.set_xlabel("new tokens per generation")
    left.legend(fontsize=7)
    reasons = Counter((g["direction"], g["stop_reason"]) for g in generations)
    kinds = sorted({r for _, r in reasons})
    bottom = [0] * len(directions)
    for kind in kinds:
        counts = [reasons[(d, kind)] for d in directions]
        right.bar([ARROWS[d] for d in directions], counts, bottom=bottom, label=kind)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    right.set_ylabel("generations")
    right.legend(fontsize=7, title="stop reason")
    figures.append(("Generation lengths and why generation stopped", figure_png(fig)))
    return figures


def html_report(
    markdown: str,
    metrics: Sequence[Mapping[str, Any]],
    generations: Sequence[Mapping[str, Any]],
    title: str,
) -> str:
    """One HTML file with the figures inline (no network, no external assets)."""
    return html_page(title, markdown, _figures(metrics, generations))
