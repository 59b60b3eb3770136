"""The STSP data layout (as the released ``stsp_data`` archive unpacks) and its manifests.

```
ROOT/manifest/emov/emov.{train,dev,test}.jsonl
ROOT/manifest/expresso/expresso_asr.{train,dev,test}.jsonl     (EXPRESSO-ASR; train may lack .jsonl)
ROOT/manifest/expresso/expresso_read.{train,dev,test}.jsonl    (EXPRESSO-READ)
ROOT/data/<wav_path>                                           (paths in the manifests are relative)
```
Rows are JSON objects with ``id``, ``wav_path``, ``asr``, ``emotion`` and/or ``sentiment``,
``split``, ``speaker``. A row that cannot be used becomes a reject naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.errors import ManifestError
from schemas.labels import EMOTION_TO_SENTIMENT
from schemas.tables import SENTIMENTS
from storage.layout import join, normalize_root
from storage.options import filesystem
from storage.sources import PlanReject, _Resolver, read_rows

DATASETS = {
    "emov": "emov/emov",
    "expresso_asr": "expresso/expresso_asr",
    "expresso_read": "expresso/expresso_read",
}
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class StspItem:
    """One recording of an STSP manifest, with its sentiment label resolved."""

    dataset: str
    id: str
    split: str
    sentiment: str
    emotion: str | None
    asr: str | None
    wav_path: str | None
    wav_uri: str | None
    speaker: str | None
    source_row: int

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.id}"


def manifest_url(root: str, dataset: str, split: str, storage_options: Any = None) -> str | None:
    """The manifest file of one dataset split, or None when the layout has none."""
    if dataset not in DATASETS:
        raise ManifestError(f"unknown STSP dataset {dataset!r}: expected {', '.join(DATASETS)}")
    fs, _ = filesystem(normalize_root(root), storage_options)
    base = join(normalize_root(root), "manifest", DATASETS[dataset] + f".{split}")
    for candidate in (base + ".jsonl", base):
        if fs.exists(filesystem(candidate, storage_options)[1]):
            return candidate
    return None


def label_of(row: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(sentiment, emotion, problem): ``sentiment`` if present, else mapped from ``emotion``."""
    emotion = row.get("emotion")
    emotion = str(emotion).strip().lower() if emotion not in (None, "") else None
    sentiment = row.get("sentiment")
    if sentiment not in (None, ""):
        label = str(sentiment).strip().lower()
        if label not in SENTIMENTS:
            return None, emotion, f"sentiment {sentiment!r} is not one of {', '.join(SENTIMENTS)}"
        return label, emotion, None
    if emotion is None:
        return None, None, "neither 'sentiment' nor 'emotion' is given"
    if emotion not in EMOTION_TO_SENTIMENT:
        return (
            None,
            emotion,
            f"emotion {emotion!r} has no sentiment (known: {', '.join(EMOTION_TO_SENTIMENT)})",
        )
    return EMOTION_TO_SENTIMENT[emotion], emotion, None


def read_manifest(
    url: str,
    dataset: str,
    data_root: str,
    need_text: bool,
    need_audio: bool,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[list[StspItem], list[PlanReject]]:
    """Usable items of one manifest; wav paths are confined to ``data_root`` (no ``..``, no symlinks out)."""
    resolver = _Resolver(data_root, storage_options)
    items: list[StspItem] = []
    rejects: list[PlanReject] = []
    seen: dict[str, int] = {}

    def reject(n: int, rid: str | None, reason: str, why: str) -> None:
        rejects.append(PlanReject(f"{url}#{n}", reason, f"{url} row {n}: {why}", rid, n))

    for n, row in read_rows(url, storage_options):
        if "__error__" in row:
            reject(n, None, "bad_row", str(row["__error__"]))
            continue
        rid = row.get("id")
        if rid in (None, ""):
            reject(n, None, "bad_row", "column 'id' is missing")
            continue
        item_id = str(rid)
        if item_id in seen:
            raise ManifestError(f"{url}: id {item_id!r} appears in rows {seen[item_id]} and {n}")
        seen[item_id] = n
        sentiment, emotion, problem = label_of(row)
        asr = row.get("asr")
        asr = str(asr).strip() if isinstance(asr, str | int | float) and str(asr).strip() else None
        if problem is None and need_text and asr is None:
            problem = "column 'asr' (the transcript) is missing or empty"
        wav_uri = None
        wav_path = row.get("wav_path")
        if problem is None and need_audio:
            if not isinstance(wav_path, str) or not wav_path:
                problem = "column 'wav_path' is missing"
            else:
                full, outside = resolver.resolve(wav_path)
                if outside:
                    reject(n, item_id, "outside_root", outside)
                    continue
                assert full is not None
                if resolver.fingerprint(full) is None:
                    reject(n, item_id, "missing", f"{wav_path!r}: no such file under {data_root}")
                    continue
                wav_uri = resolver.url(full)
        if problem is not None or sentiment is None:
            reject(n, item_id, "bad_row", problem or "no label")
            continue
        speaker = row.get("speaker")
        items.append(
            StspItem(
                dataset,
                item_id,
                str(row.get("split") or ""),
                sentiment,
                emotion,
                asr,
                wav_path if wav_uri else None,
                wav_uri,
                None if speaker in (None, "") else str(speaker),
                n,
            )
        )
    return items, rejects


def load_split(
    root: str,
    datasets: Iterable[str],
    split: str,
    need_text: bool,
    need_audio: bool,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[dict[str, list[StspItem]], list[PlanReject]]:
    """Items per dataset for one split; a dataset without a manifest is an error naming the file."""
    data_root = join(normalize_root(root), "data")
    out: dict[str, list[StspItem]] = {}
    rejects: list[PlanReject] = []
    for dataset in datasets:
        url = manifest_url(root, dataset, split, storage_options)
        if url is None:
            expected = join(normalize_root(root), "manifest", DATASETS[dataset] + f".{split}.jsonl")
            raise ManifestError(
                f"{expected}: STSP manifest not found (is --data-root the stsp_data folder?)"
            )
        items, bad = read_manifest(url, dataset, data_root, need_text, need_audio, storage_options)
        out[dataset] = items
        rejects.extend(bad)
    return out, rejects
