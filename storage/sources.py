"""Turn SOURCE (folder, glob, or manifest; local or remote) into recordings to ingest.

Planning is streamed and cheap: it lists or reads rows and stats files, it never decodes audio.
Rows that cannot describe a recording become ``PlanReject``s naming the row and column.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from schemas.errors import ManifestError
from schemas.labels import EMOTION_TO_SENTIMENT, normalize_sentiment
from storage.layout import normalize_root
from storage.options import filesystem, is_local

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")
MANIFEST_EXTENSIONS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet")
PATH_COLUMNS = ("path", "wav_path", "audio_path", "audio", "file")
TEXT_COLUMNS = ("text", "asr", "transcript")
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class SourceItem:
    """One recording to ingest: stable id, where it is, and what the manifest says about it."""

    id: str
    uri: str
    fingerprint: str  # size + mtime (local) or ETag: changes when the bytes change
    source_row: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanReject:
    uri: str
    reason: str
    error: str
    id: str | None = None
    source_row: int | None = None


@dataclass
class Plan:
    items: list[SourceItem]
    rejects: list[PlanReject]
    ignored: int = 0  # non-audio files in a folder source (listed, not ingested)
    data_root: str = ""


def _strip_ext(rel: str) -> str:
    root, ext = posixpath.splitext(rel)
    return root if ext else rel


def _local_fingerprint(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def _remote_fingerprint(info: Mapping[str, Any]) -> str:
    tag = (
        info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
    )
    return f"{info.get('size')}:{tag}"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class _Resolver:
    """Resolves manifest paths against the data root and confines them to it (``..``, symlinks)."""

    def __init__(self, data_root: str, storage_options: Mapping[str, Any] | None) -> None:
        self.root_url = normalize_root(data_root)
        self.fs, self.root = filesystem(self.root_url, storage_options)
        self.local = is_local(self.fs)
        self.real_root = os.path.realpath(self.root) if self.local else self.root
        self.protocol = (
            self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        )
        self._listing: dict[str, dict[str, Any]] | None = None

    def url(self, path: str) -> str:
        return path if self.local else f"{self.protocol}://{path}"

    def resolve(self, rel: str) -> tuple[str | None, str | None]:
        """(absolute path, None) or (None, why it is outside the root)."""
        if "://" in rel:
            return None, f"path {rel!r} is a URL; manifest paths must be relative to the data root"
        if self.local:
            full = os.path.normpath(os.path.join(self.root, rel))
            if not _inside(full, self.root):
                how = "absolute path" if os.path.isabs(rel) else "'..' escapes"
                return None, f"{how} {rel!r} is outside data root {self.root}"
            real = os.path.realpath(full)
            if not _inside(real, self.real_root):
                return None, f"{rel!r} is a symlink to {real}, outside data root {self.root}"
            return full, None
        full = posixpath.normpath(posixpath.join(self.root, rel.lstrip("/")))
        if not _inside(full, self.root) or rel.startswith("/"):
            return None, f"path {rel!r} is outside data root {self.root_url}"
        return full, None

    def fingerprint(self, path: str) -> str | None:
        """None when the file does not exist."""
        if self.local:
            try:
                return _local_fingerprint(path)
            except FileNotFoundError:
                return None
            except OSError as exc:
                return f"unstat:{exc.errno}"
        if self._listing is None:
            self._listing = {p: i for p, i in self.fs.find(self.root, detail=True).items()}
        info = self._listing.get(path)
        return None if info is None else _remote_fingerprint(info)


def plan_source(
    source: str, data_root: str | None = None, storage_options: Mapping[str, Any] | None = None
) -> Plan:
    """Plan ingest of a folder, glob or manifest; raises ``ManifestError`` for unusable sources."""
    fs, path = filesystem(source, storage_options)
    if any(ch in source for ch in GLOB_CHARS):
        return _plan_glob(source, data_root, storage_options)
    if not fs.exists(path):
        raise ManifestError(f"{source}: no such file or folder")
    if fs.isdir(path):
        return _plan_folder(source, storage_options)
    if source.lower().endswith(MANIFEST_EXTENSIONS):
        root = data_root or _parent(source)
        return _plan_manifest(source, root, storage_options)
    if source.lower().endswith(AUDIO_EXTENSIONS):
        return _plan_paths(_parent(source), [path], storage_options, ignored=0)
    raise ManifestError(
        f"{source}: not a folder, glob, audio file or manifest ({', '.join(MANIFEST_EXTENSIONS)})"
    )


def _parent(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[0] if "/" in url.rstrip("/") else "."


def _plan_folder(source: str, storage_options: Mapping[str, Any] | None) -> Plan:
    res = _Resolver(source, storage_options)
    paths: list[str] = []
    rejects: list[PlanReject] = []
    ignored = 0
    if res.local:
        for dirpath, dirnames, filenames in os.walk(res.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = os.path.join(dirpath, name)
                if name.lower().endswith(AUDIO_EXTENSIONS):
                    paths.append(full)
                else:
                    ignored += 1
            for d in dirnames:
                if os.path.islink(os.path.join(dirpath, d)):
                    link = os.path.join(dirpath, d)
                    if not _inside(os.path.realpath(link), res.real_root):
                        rejects.append(
                            PlanReject(
                                link,
                                "outside_root",
                                f"{link}: symlinked folder "
                                f"points to {os.path.realpath(link)}, outside {res.root}",
                            )
                        )
    else:
        for full in sorted(res.fs.find(res.root)):
            rel = full[len(res.root) :].lstrip("/")
            if any(part.startswith(".") for part in rel.split("/")):
                continue
            if full.lower().endswith(AUDIO_EXTENSIONS):
                paths.append(full)
            else:
                ignored += 1
    plan = _plan_paths(source, paths, storage_options, ignored)
    plan.rejects[:0] = rejects
    return plan


def _plan_glob(
    pattern: str, data_root: str | None, storage_options: Mapping[str, Any] | None
) -> Plan:
    fs, path = filesystem(pattern, storage_options)
    base = path[: min(path.find(c) for c in GLOB_CHARS if c in path)].rsplit("/", 1)[0]
    root = data_root or (base if is_local(fs) else f"{pattern.split('://', 1)[0]}://{base}")
    matches = sorted(p for p in fs.glob(path) if not fs.isdir(p))
    return _plan_paths(root, matches, storage_options, ignored=0)


def _plan_paths(
    root_url: str, paths: list[str], storage_options: Mapping[str, Any] | None, ignored: int
) -> Plan:
    res = _Resolver(root_url, storage_options)
    items: list[SourceItem] = []
    rejects: list[PlanReject] = []
    for full in paths:
        rel = full[len(res.root) :].lstrip("/") if _inside(full, res.root) else full
        uri = res.url(full)
        _, problem = res.resolve(rel)
        if problem:
            rejects.append(PlanReject(uri, "outside_root", problem, id=_strip_ext(rel)))
            continue
        fp = res.fingerprint(full)
        if fp is None:
            rejects.append(PlanReject(uri, "missing", f"{uri}: file not found", id=_strip_ext(rel)))
            continue
        items.append(SourceItem(id=_strip_ext(rel), uri=uri, fingerprint=fp))
    _check_unique_ids(items, lambda it: it.uri)
    return Plan(items=items, rejects=rejects, ignored=ignored, data_root=res.root_url)


def _check_unique_ids(items: list[SourceItem], where: Any) -> None:
    seen: dict[str, SourceItem] = {}
    clashes: list[str] = []
    for item in items:
        if item.id in seen:
            clashes.append(f"id {item.id!r}: {where(seen[item.id])} and {where(item)}")
        else:
            seen[item.id] = item
    if clashes:
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise ManifestError("ids must be unique: " + "; ".join(clashes[:5]) + more)


def read_rows(
    source: str, storage_options: Mapping[str, Any] | None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) for each data row; row numbers are what a person sees (1-based lines/rows)."""
    fs, path = filesystem(source, storage_options)
    lower = source.lower()
    if lower.endswith(".parquet"):
        pf = pq.ParquetFile(path, filesystem=fs)
        n = 0
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                n += 1
                yield n, row
        return
    with fs.open(path, "rb") as raw:
        if lower.endswith((".csv", ".tsv")):
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            reader = csv.DictReader(text, delimiter="\t" if lower.endswith(".tsv") else ",")
            try:
                for n, row in enumerate(reader, start=1):
                    yield n, {k: (v if v != "" else None) for k, v in row.items() if k is not None}
            except UnicodeDecodeError as exc:
                raise ManifestError(f"{source}: not UTF-8 text ({exc.reason})") from exc
            return
        for n, data in enumerate(raw, start=1):  # JSONL: a bad line is a bad row, not a bad file
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield n, {"__error__": f"not UTF-8 ({exc.reason} at byte {exc.start})"}
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, {"__error__": f"invalid JSON ({exc.msg} at column {exc.colno})"}
                continue
            yield n, row if isinstance(row, dict) else {"__error__": "line is not a JSON object"}


def _parse_words(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, list):
        raise ValueError("expected a list of {word, start, end}")
    words = []
    last_end = 0.0
    for i, w in enumerate(value):
        if not isinstance(w, Mapping) or not {"word", "start", "end"} <= set(w):
            raise ValueError(f"item {i}: expected keys word, start, end")
        start, end = float(w["start"]), float(w["end"])
        if not (0.0 <= start <= end) or start + 1e-6 < last_end - 1e-3:
            raise ValueError(f"item {i} ({w['word']!r}): times {start}..{end} not increasing")
        last_end = end
        words.append({"word": str(w["word"]), "start": start, "end": end})
    return words


def _row_meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """Labels and text of a manifest row; raises ValueError('column X: …') on bad values."""
    meta: dict[str, Any] = {}
    text = next((row[c] for c in TEXT_COLUMNS if row.get(c) is not None), None)
    meta["text"] = None if text is None else str(text)
    for col in ("speaker", "emotion", "split"):
        meta[col] = None if row.get(col) is None else str(row[col])
    try:
        meta["sentiment"] = normalize_sentiment(row.get("sentiment"))
    except ValueError as exc:
        raise ValueError(f"column 'sentiment': {exc}") from exc
    if meta["sentiment"] is None and meta["emotion"] is not None:
        meta["sentiment"] = EMOTION_TO_SENTIMENT.get(meta["emotion"].lower())
    try:
        meta["words"] = _parse_words(row.get("words"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"column 'words': {exc}") from exc
    return meta


def _plan_manifest(source: str, data_root: str, storage_options: Mapping[str, Any] | None) -> Plan:
    res = _Resolver(data_root, storage_options)
    items: list[SourceItem] = []
    rejects: list[PlanReject] = []
    path_col: str | None = None
    for n, row in read_rows(source, storage_options):
        where = f"{source} row {n}"
        if "__error__" in row:
            rejects.append(
                PlanReject(where, "bad_row", f"{where}: {row['__error__']}", source_row=n)
            )
            continue
        if path_col is None:
            path_col = next((c for c in PATH_COLUMNS if c in row), None)
            if path_col is None:
                raise ManifestError(
                    f"{source}: no path column (expected one of {', '.join(PATH_COLUMNS)}); "
                    f"columns are {', '.join(map(str, row))}"
                )
        rel = row.get(path_col)
        rid = None if row.get("id") is None else str(row["id"])
        if not rel:
            rejects.append(
                PlanReject(where, "bad_row", f"{where}: column {path_col!r} is empty", rid, n)
            )
            continue
        rel = str(rel)
        full, problem = res.resolve(rel)
        uri = res.url(full) if full else rel
        rid = rid or _strip_ext(rel)
        if problem or full is None:
            rejects.append(PlanReject(uri, "outside_root", f"{where}: {problem}", rid, n))
            continue
        try:
            meta = _row_meta(row)
        except ValueError as exc:
            rejects.append(PlanReject(uri, "bad_row", f"{where}: {exc}", rid, n))
            continue
        fp = res.fingerprint(full)
        if fp is None:
            rejects.append(PlanReject(uri, "missing", f"{where}: {uri} not found", rid, n))
            continue
        items.append(SourceItem(id=rid, uri=uri, fingerprint=fp, source_row=n, meta=meta))
    _check_unique_ids(items, lambda it: f"row {it.source_row}")
    return Plan(items=items, rejects=rejects, ignored=0, data_root=res.root_url)
