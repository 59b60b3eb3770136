"""Text sources for text-only corpus samples: JSONL/CSV/TSV/Parquet rows with ``text``, or plain text.

Plain text (``.txt``, any other extension) is one document per non-empty line; documents are
stripped of surrounding whitespace (tokenizers differ in how they keep it, and it carries nothing). Rows that cannot be
used (bad JSON, no ``text``, empty, or containing SpiRit-LM's own marker strings, which would forge
modality switches) become reject rows naming the file and row; duplicate ids stop the build.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.errors import ManifestError
from storage.options import filesystem
from storage.sources import PlanReject, read_rows

_SPECIAL = re.compile(r"\[(?:Text|Speech|Hu\d+|Pi\d+|St\d+)\]")
_ROW_FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


@dataclass(frozen=True)
class TextDoc:
    id: str
    text: str
    source_row: int


def _base_name(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _plain_lines(
    url: str, storage_options: Mapping[str, Any] | None
) -> Iterator[tuple[int, dict[str, Any]]]:
    fs, path = filesystem(url, storage_options)
    with fs.open(path, "rb") as raw:
        for n, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8", errors="strict"), start=1):
            if line.strip():
                yield n, {"text": line.rstrip("\r\n")}


def read_text_source(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[list[TextDoc], list[PlanReject]]:
    """Every usable document of ``url`` and a reject for each row that is not."""
    fs, path = filesystem(url, storage_options)
    if not fs.exists(path):
        raise ManifestError(f"{url}: text source not found")
    rows = (
        read_rows(url, storage_options)
        if url.lower().endswith(_ROW_FORMATS)
        else _plain_lines(url, storage_options)
    )
    base = _base_name(url)
    docs: list[TextDoc] = []
    rejects: list[PlanReject] = []
    seen: dict[str, int] = {}
    try:
        for n, row in rows:
            where = f"{url} row {n}"
            raw_id = row.get("id")
            doc_id = f"{base}:{n}" if raw_id is None or str(raw_id) == "" else str(raw_id)
            problem = _problem(row)
            if problem:
                rejects.append(
                    PlanReject(f"{url}#{n}", "bad_text", f"{where}: {problem}", doc_id, n)
                )
                continue
            if doc_id in seen:
                raise ManifestError(f"{url}: id {doc_id!r} appears in rows {seen[doc_id]} and {n}")
            seen[doc_id] = n
            docs.append(TextDoc(doc_id, str(row["text"]).strip(), n))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{url}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return docs, rejects


def _problem(row: Mapping[str, Any]) -> str | None:
    if "__error__" in row:
        return str(row["__error__"])
    text = row.get("text")
    if text is None:
        return "column 'text' is missing or null"
    if not isinstance(text, str):
        return f"column 'text' is {type(text).__name__}, not a string"
    if not text.strip():
        return "column 'text' is empty"
    found = _SPECIAL.search(text)
    if found:
        return f"column 'text' contains the SpiRit-LM token {found.group(0)} (it would forge a modality switch)"
    return None
