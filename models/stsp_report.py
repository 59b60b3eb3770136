"""The STSP report: Markdown and a self-contained HTML page (inline PNG figures), paper Table 3 beside ours."""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from models.metrics import PAPER_TABLE3
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


def _figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figures(
    metrics: Sequence[Mapping[str, Any]], generations: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    figures.append(("STSP accuracy by direction, with paper Table 3", _figure_png(fig)))

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
    figures.append(("Confusion matrices", _figure_png(fig)))

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
    figures.append(("Generation lengths and why generation stopped", _figure_png(fig)))
    return figures


def html_report(
    markdown: str,
    metrics: Sequence[Mapping[str, Any]],
    generations: Sequence[Mapping[str, Any]],
    title: str,
) -> str:
    """One HTML file with the figures inline (no network, no external assets)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
        "figure{margin:1.5em 0}img{max-width:100%}pre{white-space:pre-wrap}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for caption, png in _figures(metrics, generations):
        parts.append(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{png}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append(markdown_to_html(markdown.split("\n", 1)[1]))
    parts.append("</body></html>")
    return "".join(parts)


def _inline(text: str) -> str:
    """``code`` and **bold** of our own Markdown, escaped."""
    out = html.escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        pieces = out.split(mark)
        out = "".join(p if k % 2 == 0 else f"<{tag}>{p}</{tag}>" for k, p in enumerate(pieces))
    return out


def markdown_to_html(markdown: str) -> str:
    """The subset our reports use: headings, bullet lists, pipe tables, paragraphs."""
    out: list[str] = []
    table: list[list[str]] = []
    in_list = False

    def flush() -> None:
        nonlocal in_list
        if table:
            head, *body = table
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
            out.extend(
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body
            )
            out.append("</table>")
            table.clear()
        if in_list:
            out.append("</ul>")
            in_list = False

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-:") for c in cells):
                table.append(cells)
            continue
        if line.startswith("- "):
            if not in_list:
                flush()
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(line[2:])}</li>")
            continue
        flush()
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)
