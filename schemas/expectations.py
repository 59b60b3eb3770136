"""Great Expectations suites generated from the table specs, and the validation step every stage runs.

A failure raises ``TableValidationError`` naming the table, the column, the expectation and up to
ten offending rows (by the table's row id), so a data engineer can find them without GE's docs.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import pandas as pd

from schemas.errors import TableValidationError
from schemas.tables import Rule, TableSpec

log = logging.getLogger(__name__)
MAX_ROWS_NAMED = 10

_EXPECTATION_CLASSES = {
    "not_null": "ExpectColumnValuesToNotBeNull",
    "unique": "ExpectColumnValuesToBeUnique",
    "between": "ExpectColumnValuesToBeBetween",
    "in_set": "ExpectColumnValuesToBeInSet",
    "regex": "ExpectColumnValuesToMatchRegex",
}


def _gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


_LOCK = threading.RLock()


def prepare_in_background(*specs: TableSpec) -> threading.Thread:
    """Import GE and build the suites on a thread (GE's import takes seconds) while work runs."""

    def _prepare() -> None:
        for spec in specs:
            _checkpoint(spec.name, spec)

    thread = threading.Thread(target=_prepare, name="gx-prepare", daemon=True)
    thread.start()
    return thread


_CONTEXT: list[Any] = []


def _context() -> Any:
    """One ephemeral GE context per process (creating one costs about a second)."""
    with _LOCK:
        if not _CONTEXT:
            ctx = _gx().get_context(mode="ephemeral")
            ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
            _CONTEXT.append(ctx)
        return _CONTEXT[0]


def build_expectation(rule: Rule) -> Any:
    """The GE expectation object for one rule."""
    import great_expectations.expectations as gxe

    if rule.kind == "length_between":
        # GE measures lengths of strings; list lengths get a derived column (see _gx_frame).
        return gxe.ExpectColumnValuesToBeBetween(column=_length_column(rule.column), **rule.args)
    cls = getattr(gxe, _EXPECTATION_CLASSES[rule.kind])
    return cls(column=rule.column, **rule.args)


def _length_column(column: str) -> str:
    return f"{column}.length"


def build_suite(spec: TableSpec) -> Any:
    """A fresh, unsaved ExpectationSuite for ``spec`` (also used to render Data Docs)."""
    gx = _gx()
    _context()  # expectations need an active context to exist
    return gx.ExpectationSuite(
        name=f"spiritflow.{spec.name}.v{spec.version}",
        expectations=[build_expectation(rule) for rule in spec.rules],
    )


_CHECKPOINTS: dict[str, Any] = {}
_UNPUBLISHED: list[Any] = []  # validation result ids not yet rendered into Data Docs


def _checkpoint(spec_name: str, spec: TableSpec) -> Any:
    with _LOCK:
        if spec_name not in _CHECKPOINTS:
            _CHECKPOINTS[spec_name] = _new_checkpoint(spec_name, spec)
        return _CHECKPOINTS[spec_name]


def _new_checkpoint(spec_name: str, spec: TableSpec) -> Any:
    gx = _gx()
    ctx = _context()
    source = ctx.data_sources.add_pandas(name=f"spiritflow-{spec_name}")
    asset = source.add_dataframe_asset(name=spec_name)
    batch = asset.add_batch_definition_whole_dataframe(f"{spec_name}-whole")
    suite = ctx.suites.add(build_suite(spec))
    definition = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"validate-{spec_name}", data=batch, suite=suite)
    )
    # A checkpoint (not the bare definition) so every result is kept for the Data Docs site.
    return ctx.checkpoints.add(
        gx.Checkpoint(
            name=f"check-{spec_name}",
            validation_definitions=[definition],
            actions=[],
            result_format={"result_format": "COMPLETE", "partial_unexpected_count": MAX_ROWS_NAMED},
        )
    )


def _gx_frame(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """GE's pandas engine wants plain object/numeric columns, not arrow-backed extension types."""
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for col in df.columns:
        values = df[col]
        if isinstance(values.dtype, pd.ArrowDtype) or str(values.dtype) in ("string", "str"):
            values = values.astype(object)
        out[col] = values.to_numpy(dtype=object) if values.dtype == object else values.to_numpy()
    for derived in spec.derived:
        values = derived.compute(df)
        out[derived.name] = values.astype(object).where(values.notna(), None).to_numpy(dtype=object)
    for rule in spec.rules:
        if rule.kind == "length_between":
            out[_length_column(rule.column)] = pd.array(
                [None if v is None else len(v) for v in out[rule.column]], dtype="Int64"
            )
    return out


def _describe(result: Any, spec: TableSpec, frame: pd.DataFrame) -> str:
    cfg = result.expectation_config
    column = cfg.kwargs.get("column")
    kind = cfg.type
    res = result.result or {}
    idx = res.get("partial_unexpected_index_list") or res.get("unexpected_index_list") or []
    rows: list[str] = []
    for item in idx[:MAX_ROWS_NAMED]:
        pos = item if isinstance(item, int) else item.get("index", item)
        if isinstance(pos, int) and spec.row_id in frame.columns:
            rows.append(f"{spec.row_id}={frame[spec.row_id].iloc[pos]!r} (row {pos})")
        else:
            rows.append(str(pos))
    values = res.get("partial_unexpected_list") or []
    count = res.get("unexpected_count", "?")
    detail = f"{count} bad value(s)"
    if values:
        detail += f", e.g. {values[:3]!r}"
    if rows:
        detail += f"; rows: {', '.join(rows)}"
    return f"column {column!r}: {kind} failed: {detail}"


def validate_frame(df: pd.DataFrame, spec: TableSpec) -> int:
    """Run ``spec``'s suite on ``df``; return the row count or raise ``TableValidationError``."""
    missing = [c for c in spec.columns if c not in df.columns]
    if missing:
        raise TableValidationError(spec.name, [f"missing column(s): {', '.join(missing)}"])
    if df.empty:
        return 0
    frame = _gx_frame(df[spec.columns], spec)
    checkpoint = _checkpoint(spec.name, spec)
    with _LOCK:  # one checkpoint per table, shared by a worker's threads
        run = checkpoint.run(batch_parameters={"dataframe": frame})
        _UNPUBLISHED.extend(run.run_results)
    result = next(iter(run.run_results.values()))
    if result.success:
        return len(df)
    failures = [_describe(r, spec, frame) for r in result.results if not r.success]
    raise TableValidationError(spec.name, failures)


def data_docs_site() -> str | None:
    """Build GE Data Docs for this process's suites and validation results; the site's local folder
    (None when nothing was validated in this process)."""
    with _LOCK:
        if not _CONTEXT:
            return None
        ctx = _CONTEXT[0]
        # Only the results since the last call (and the index): a long-lived worker keeps every
        # result in memory, and rebuilding all of them each time grows without bound.
        pending = list(_UNPUBLISHED)
        _UNPUBLISHED.clear()
        if not pending:
            return None
        ctx.build_data_docs(resource_identifiers=pending)
        site = ctx.get_docs_sites_urls()[0]["site_url"]
    if not site or not site.startswith("file://"):
        return None
    return str(site[len("file://") :].rsplit("/", 1)[0])
