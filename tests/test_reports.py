"""Run reports render in headless Chromium (Debian's) with every figure decoded and drawn."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from models.metrics import metric_rows
from models.report import html_page, markdown_to_html
from models.stage_reports import corpus_figures, ingest_figures, units_figures
from models.stsp_report import html_report, markdown_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BAR_BLUE = (76, 120, 168)  # #4C78A8, the bars of every report


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (make test installs it when run as root)")
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def _rendered(page: Path, tmp_path: Path, images: int) -> np.ndarray:
    """Assert Chromium decodes ``images`` figures; return the screenshot's pixels."""
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>document.title='decoded:'+[...document.images]"
            ".filter(i=>i.complete&&i.naturalWidth>100).length</script></body>",
        )
    )
    dom = _chromium(["--dump-dom", probe.as_uri()], tmp_path / "profile-dom").stdout
    assert f"<title>decoded:{images}</title>" in dom
    shot = tmp_path / f"{page.stem}.png"
    _chromium(
        [f"--screenshot={shot}", "--window-size=1100,1600", page.as_uri()],
        tmp_path / "profile-shot",
    )
    import matplotlib.image

    return (matplotlib.image.imread(shot)[..., :3] * 255).round().astype(int)


def _blue_pixels(pixels: np.ndarray) -> int:
    return int((np.abs(pixels - np.array(BAR_BLUE)).sum(axis=-1) < 12).sum())


def test_stage_reports_show_their_figures(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    figures = ingest_figures(
        list(rng.uniform(1, 20, 50)), {"too_short": 3, "corrupt": 1}, [16_000] * 40 + [44_100] * 10
    )
    figures += units_figures(
        {
            "hubert": [list(rng.integers(0, 501, 250))],
            "pitch": [list(rng.integers(0, 64, 125))],
            "style": [[3] * 10],
        },
        [10.0],
    )
    figures += corpus_figures(
        [
            {
                "kind": "speech",
                "text_tokens": 0,
                "speech_tokens": 900,
                "marker_tokens": 4,
                "text_span_words": [],
                "speech_span_words": [],
            },
            {
                "kind": "interleaved",
                "text_tokens": 300,
                "speech_tokens": 500,
                "marker_tokens": 12,
                "text_span_words": [],
                "speech_span_words": [],
            },
            {
                "kind": "all",
                "text_tokens": 300,
                "speech_tokens": 1400,
                "marker_tokens": 16,
                "text_span_words": [0, 0, 3, 4],
                "speech_span_words": [0, 2, 5],
            },
        ]
    )
    page = tmp_path / "stages.html"
    page.write_text(html_page("stage reports", "# t\n\n| a | b |\n|---|---|\n| 1 | 2 |", figures))
    pixels = _rendered(page, tmp_path, images=3)
    assert _blue_pixels(pixels) > 2000  # histograms and bars drawn, not a blank page


def test_stsp_report_shows_accuracy_confusion_and_lengths(tmp_path: Path) -> None:
    scores = [
        {"direction": d, "dataset": ds, "seed": s, "label": lab, "pred": pred, "scorer": "vader"}
        for d, ds in (("t2t", "expresso_asr"), ("s2s", "emov"), ("s2s", "expresso_read"))
        for s in (0, 1)
        for lab, pred in (("positive", "positive"), ("negative", "neutral"), ("neutral", "neutral"))
    ]
    metrics = metric_rows(scores)
    generations = [
        {"direction": d, "new_tokens": n, "stop_reason": r}
        for d in ("t2t", "s2s")
        for n, r in ((50, "length"), (12, "eos"))
    ]
    markdown = markdown_report(metrics, {"t2t": "vader", "s2s": "asr+vader"}, {}, "STSP")
    page = tmp_path / "stsp.html"
    page.write_text(html_report(markdown, metrics, generations, "STSP"))
    pixels = _rendered(page, tmp_path, images=3)
    assert _blue_pixels(pixels) > 2000
    text = page.read_text()
    assert "not the paper&#x27;s classifier" in text or "not the paper's classifier" in text
    assert "<th>model</th>" in text and "Spirit LM Expressive (paper)" in text


def test_markdown_subset() -> None:
    html = markdown_to_html(
        "## Title\n\n- **bold** and `code`\n\n| x | y |\n|---|---|\n| <1> | 2 |\n\ntext"
    )
    assert html.splitlines() == [
        "<h2>Title</h2>",
        "<ul>",
        "<li><b>bold</b> and <code>code</code></li>",
        "</ul>",
        "<table><tr><th>x</th><th>y</th></tr>",
        "<tr><td>&lt;1&gt;</td><td>2</td></tr>",
        "</table>",
        "<p>text</p>",
    ]


def test_a_flow_writes_its_report_and_data_docs(tmp_path: Path, write_audio: object) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.ingest import ingest_flow
    from flows.params import IngestParams

    for k in range(3):
        write_audio(f"in/clip{k}.wav", seconds=0.5 + k)  # type: ignore[operator]
    (tmp_path / "in" / "bad.wav").write_bytes(b"RIFFjunk")
    out = tmp_path / "out"
    summary = ingest_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))(
        IngestParams(source=str(tmp_path / "in"), out=str(out))
    )
    assert summary.tables["report_html"].endswith("reports/ingest.html")
    _rendered(out / "reports" / "ingest.html", tmp_path, images=1)
    index = (out / "reports" / "data-docs" / "index.html").read_text()
    assert "spiritflow.recordings.v1" in index and "spiritflow.rejects.v1" in index
    pages = list(
        (out / "reports" / "data-docs" / "validations" / "spiritflow" / "recordings").rglob(
            "*.html"
        )
    )
    assert pages and "Succeeded" in pages[0].read_text()
