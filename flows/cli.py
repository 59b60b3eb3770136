"""``spiritflow``: the command line. Options and their help come from the flows' params models."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from flows.params import (
    BuildCorpusParams,
    DecodeParams,
    IngestParams,
    StspParams,
    TokenizeParams,
)
from flows.runtime import ClusterOptions
from schemas.errors import SpiritflowError, UsageError
from storage.options import parse_storage_options, redact

EXIT_OK, EXIT_NOTHING_READABLE, EXIT_USAGE = 0, 1, 2
_SKIP = {"storage_options"}
_POSITIONAL = {"source", "units"}


def _add_model_options(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    for name, info in model.model_fields.items():
        if name in _SKIP:
            continue
        help_text = info.description or ""
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if name in _POSITIONAL and extra.get("cli") != "option":
            parser.add_argument(name, metavar=name.upper(), help=help_text)
            continue
        flag = "--" + name.replace("_", "-")
        required = info.is_required()
        kwargs: dict[str, Any] = {"dest": name, "required": required}
        annotation = info.annotation
        if annotation in (int, float):
            kwargs["type"] = annotation
        elif annotation is bool:
            kwargs.pop("required")
            parser.add_argument(flag, action="store_true", help=help_text, dest=name)
            continue
        elif get_origin(annotation) is Literal:
            kwargs["choices"] = list(get_args(annotation))
        if not required:
            kwargs["default"] = info.get_default(call_default_factory=True)
            default = kwargs["default"]
            if isinstance(default, tuple):
                sep = "-" if all(isinstance(v, int) for v in default) else ","
                default = kwargs["default"] = sep.join(
                    f"{v:g}" if isinstance(v, int | float) else str(v) for v in default
                )
            if default not in (None, ""):
                help_text += f" (default: {default})"
        parser.add_argument(flag, help=help_text, **kwargs)


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where it runs")
    group.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec storage option, repeatable; dotted keys nest "
        "(client_kwargs.endpoint_url=http://127.0.0.1:9000); credentials come from AWS_* env vars",
    )
    group.add_argument(
        "--dask-address",
        default=None,
        help="scheduler of an existing Dask cluster (tcp://host:8786); default: a LocalCluster",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        help="LocalCluster worker processes (default: one per CPU core)",
    )
    group.add_argument(
        "--threads-per-worker", type=int, default=1, help="threads per worker (default: 1)"
    )
    group.add_argument("--json", action="store_true", help="print the run summary as JSON")


STAGE_COMMANDS: list[tuple[str, type[BaseModel], str, str]] = [
    (
        "ingest",
        IngestParams,
        "decode, hash and measure audio into the recordings/rejects/duplicates tables",
        "Ingest a folder, glob or manifest of audio. Good files go to OUT/recordings, bad ones to OUT/rejects "
        "with a reason, identical content to OUT/duplicates. Reruns reuse finished shards. Exit status: 0 on "
        "success, 1 if nothing was readable or the run failed, 2 on bad usage.",
    ),
    (
        "tokenize",
        TokenizeParams,
        "ingest, then extract SpiRit-LM units (HuBERT, pitch, style) into the units table",
        "Ingest SOURCE (as `ingest` does), then tokenize every good recording with the SpiRit-LM speech tokenizer "
        "from --checkpoints (released layout) into OUT/units. Recordings already tokenized with the same "
        "checkpoints and parameters are reused, so adding files extracts only them.",
    ),
    (
        "decode",
        DecodeParams,
        "resynthesise audio from a units table with the HiFi-GAN vocoder",
        "Decode every row of a units table (UNITS: folder or file) to OUT/audio/<id>.wav with the vocoder of its "
        "variant from --checkpoints. Existing wavs are kept, so a rerun resumes.",
    ),
    (
        "build-corpus",
        BuildCorpusParams,
        "build interleaved speech-text training samples from units, transcripts and text",
        "Build a SpiRit-LM training corpus in OUT/corpus from a tokenize run (--units): speech-only samples, "
        "text-only samples from --text, and interleaved samples that switch modality at word boundaries "
        "(text spans and speech spans of --text-span / --speech-span words). Word timings come from the "
        "manifest's `words`, else from the forced --aligner on the transcript (`asr`/`text`); failed "
        "alignments go to OUT/corpus_rejects and the recording becomes a speech-only sample. Ids follow "
        "SpiRit-LM's token table (checked against --tokenizer). Writes OUT/alignments, OUT/corpus_stats "
        "and, with --pack, OUT/packed. Sampling is seeded per item: a rebuild gives the same bytes.",
    ),
    (
        "stsp",
        StspParams,
        "run the STSP benchmark: generate with SpiRit-LM and score sentiment preservation",
        "Speech-Text Sentiment Preservation (SpiRit-LM paper §5.2) on the STSP layout under --data-root: "
        "each test item of each direction (T→T and T→S on EXPRESSO-ASR, S→T and S→S on EXPRESSO-READ and "
        "EMOV) is continued by --model (sampling: temperature 0.8, top-p 0.95, top-k 50; --seeds runs), "
        "speech outputs are vocoded to OUT/audio/, and the continuation's sentiment is scored. Speech "
        "prompts are tokenized by the tokenize stages (OUT/recordings, OUT/units). Writes OUT/generations, "
        "OUT/scores, OUT/metrics (accuracy with 95% bootstrap CIs, mean ± std over seeds, confusion "
        "matrices) and OUT/reports/stsp.{md,html} with the paper's Table 3 beside the run. The default "
        "scorers (vader, asr+text) work offline but are NOT the paper's classifiers; pass hf:DIR for those. "
        "Finished shards are never regenerated.",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spiritflow",
        description="SpiRit-LM data pipeline: Prefect flows on Dask. Each command writes Parquet tables "
        "under --out (local, s3:// or memory://) and prints where they are.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, model, help_text, description in STAGE_COMMANDS:
        stage = sub.add_parser(name, help=help_text, description=description)
        _add_model_options(stage, model)
        _add_runtime_options(stage)

    ckpt = sub.add_parser(
        "checkpoints",
        help="write tiny random checkpoints in the released SpiRit-LM layout (tests, demos)",
        description="Checkpoint utilities. `checkpoints tiny DIR` writes a complete tiny RANDOM set in the released "
        "layout: speech tokenizer (HuBERT + quantizer, F0 VQ-VAE, style encoder), both HiFi-GAN vocoders, and "
        "base/expressive LlamaForCausalLM dirs with a tokenizer whose SpiRit-LM token ids are the released ones.",
    )
    ckpt_sub = ckpt.add_subparsers(dest="checkpoints_command", required=True, metavar="ACTION")
    tiny = ckpt_sub.add_parser(
        "tiny",
        help="write tiny random checkpoints to DIR",
        description="Write tiny random checkpoints (about 20 MB) to DIR; same seed, same bytes.",
    )
    tiny.add_argument("dir", metavar="DIR", help="output folder (SPIRITLM_CHECKPOINTS_DIR layout)")
    tiny.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    score = sub.add_parser(
        "stsp-score",
        help="score an STSP predictions file against a reference manifest",
        description='Accuracy (with a 95% bootstrap CI and a confusion matrix) of PRED ({"id", "pred"} per '
        "line) against REF (an STSP manifest). Every id must appear in both files: mismatches fail, naming "
        "a few ids (the reference script silently skips them, which changes the denominator).",
    )
    score.add_argument(
        "--ref", required=True, metavar="REF.jsonl", help="reference manifest (id + label)"
    )
    score.add_argument(
        "--pred", required=True, metavar="PRED.jsonl", help='predictions: {"id", "pred"} per line'
    )
    score.add_argument(
        "--label",
        choices=["sentiment", "emotion"],
        default="sentiment",
        help="reference field to compare with (sentiment falls back to the mapped emotion; default: sentiment)",
    )
    score.add_argument("--json", action="store_true", help="print the result as JSON")

    synth = sub.add_parser(
        "stsp-synth",
        help="write a small synthetic STSP set (eSpeak NG speech) in the real layout",
        description="Write DIR/manifest/... and DIR/data/... like the released stsp_data: positive, negative and "
        "neutral sentences spoken by eSpeak NG with sentiment-typical pitch and rate, test and train splits of "
        "emov, expresso_asr and expresso_read. For demos and tests; it is not the real STSP data.",
    )
    synth.add_argument("dir", metavar="DIR", help="output folder (use it as --data-root)")
    synth.add_argument(
        "--per-class", type=int, default=2, help="test items per sentiment and dataset (default: 2)"
    )
    synth.add_argument(
        "--train-per-class", type=int, default=2, help="train items per sentiment (default: 2)"
    )
    return parser


def _params(model: type[BaseModel], args: argparse.Namespace) -> Any:
    values = {
        k: getattr(args, k) for k in model.model_fields if k not in _SKIP and hasattr(args, k)
    }
    values["storage_options"] = parse_storage_options(args.storage_option)
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(problems) from exc


def _print_ingest(summary: Any) -> None:
    print(f"ingest finished in {summary.seconds:.1f} s")
    print(f"  good recordings : {summary.good} ({summary.hours:.3f} h of audio)")
    print(f"  rejected        : {summary.rejected}")
    for reason, count in summary.reasons.items():
        print(f"    {reason:<14}: {count}")
    print(f"  duplicates      : {summary.duplicates}")
    if summary.ignored_files:
        print(f"  ignored         : {summary.ignored_files} non-audio files")
    if summary.shards and summary.shards_computed == 0:
        print(f"  shards          : {summary.shards}, all reused (nothing recomputed)")
    else:
        print(
            f"  shards          : {summary.shards_computed} computed, {summary.shards_reused} reused"
        )
    for name, url in summary.tables.items():
        print(f"  {name:<16}: {url}")


def _run_flow(
    flow: Any, params: BaseModel, args: argparse.Namespace, gpu_stage: bool = False
) -> Any:
    from flows.runtime import prefect_api, task_runner

    cluster = ClusterOptions(args.dask_address, args.workers, args.threads_per_worker)
    with prefect_api():
        return flow.with_options(task_runner=task_runner(cluster, gpu_stage=gpu_stage))(params)


def run_ingest(args: argparse.Namespace) -> int:
    from flows.ingest import ingest_flow

    summary = _run_flow(ingest_flow, _params(IngestParams, args), args)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=1))
    else:
        _print_ingest(summary)
    return EXIT_OK if summary.good else EXIT_NOTHING_READABLE


def _print_units(units: dict[str, Any]) -> None:
    print(f"units finished in {units['seconds']:.1f} s")
    print(f"  recordings      : {units['recordings']} ({units['audio_hours']:.3f} h)")
    nothing = " (nothing recomputed)" if not units["extracted"] else ""
    print(f"  extracted       : {units['extracted']}, reused {units['reused_rows']}{nothing}")
    print(f"  rejected        : {units['rejected']}")
    for name, url in units["tables"].items():
        print(f"  {name:<16}: {url}")


def run_tokenize(args: argparse.Namespace) -> int:
    from flows.units import tokenize_flow

    result = _run_flow(tokenize_flow, _params(TokenizeParams, args), args, gpu_stage=True)
    if args.json:
        print(json.dumps(result, indent=1))
        return EXIT_OK if result["ingest"]["good"] else EXIT_NOTHING_READABLE
    from tasks.ingest import IngestSummary

    _print_ingest(IngestSummary(**result["ingest"]))
    _print_units(result["units"])
    return EXIT_OK if result["ingest"]["good"] else EXIT_NOTHING_READABLE


def run_decode(args: argparse.Namespace) -> int:
    from flows.units import decode_flow

    result = _run_flow(decode_flow, _params(DecodeParams, args), args, gpu_stage=True)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"decoded {result['written']} recordings ({result['audio_s']:.1f} s of audio), kept {result['kept']} "
            f"existing; wavs under {result['audio']}"
        )
    return EXIT_OK


def run_build_corpus(args: argparse.Namespace) -> int:
    from flows.corpus import build_corpus_flow

    summary = _run_flow(build_corpus_flow, _params(BuildCorpusParams, args), args)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=1))
        return EXIT_OK if summary.samples else EXIT_NOTHING_READABLE
    print(f"build-corpus finished in {summary.seconds:.1f} s ({summary.variant})")
    for stat in summary.stats:
        rate = stat["speech_tokens_per_s"]
        per_s = (
            f", {rate:.1f} speech tokens/s (paper ≈{stat['expected_tokens_per_s']:.0f})"
            if rate
            else ""
        )
        print(f"  {stat['kind']:<12}: {stat['samples']} samples, {stat['tokens']} tokens{per_s}")
    print(f"  aligned now     : {summary.aligned_now}")
    print(f"  rejected        : {summary.rejected}")
    print(f"  shards          : {summary.shards_computed} computed, {summary.shards_reused} reused")
    for name, url in summary.tables.items():
        print(f"  {name:<16}: {url}")
    return EXIT_OK if summary.samples else EXIT_NOTHING_READABLE


def run_stsp(args: argparse.Namespace) -> int:
    from flows.stsp import stsp_flow

    summary = _run_flow(stsp_flow, _params(StspParams, args), args, gpu_stage=True)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=1))
        return EXIT_OK if summary.generations else EXIT_NOTHING_READABLE
    print(f"stsp finished in {summary.seconds:.1f} s")
    print(
        f"  generations     : {summary.generations} ({summary.shards_computed} shards computed, {summary.shards_reused} reused)"
    )
    print(f"  rejected rows   : {summary.rejected}")
    for direction, acc in summary.accuracy.items():
        scorer = summary.scorers.get(direction, "?")
        tag = "" if summary.paper_classifier.get(direction) else ", not the paper's classifier"
        print(f"  {direction:<16}: accuracy {acc:.3f} (scorer {scorer}{tag})")
    for name, url in summary.tables.items():
        print(f"  {name:<16}: {url}")
    return EXIT_OK if summary.generations else EXIT_NOTHING_READABLE


def run_stsp_score(args: argparse.Namespace) -> int:
    from models.metrics import predictions, reference_labels, score_files
    from schemas.errors import ManifestError
    from storage.sources import read_rows

    try:
        ref = reference_labels(read_rows(args.ref, None), args.label, args.ref)
        pred = predictions(read_rows(args.pred, None), args.pred)
    except (FileNotFoundError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {exc}") from exc
    acc = score_files(ref, pred, args.ref, args.pred)
    if args.json:
        print(json.dumps({"label": args.label, **acc.__dict__}, indent=1))
        return EXIT_OK
    print(
        f"Accuracy: {100 * acc.accuracy:.2f}% ({acc.correct}/{acc.n}) for predictions from {args.pred}"
    )
    print(
        f"  95% bootstrap CI: {100 * acc.ci_low:.2f}%-{100 * acc.ci_high:.2f}% (label: {args.label})"
    )
    if acc.confusion:
        from schemas.tables import SENTIMENTS

        print("  confusion (rows: reference, columns: predicted " + "/".join(SENTIMENTS) + ")")
        for name, row in zip(SENTIMENTS, acc.confusion, strict=True):
            print(f"    {name:<9}" + "".join(f"{c:>6}" for c in row))
    return EXIT_OK


def run_stsp_synth(args: argparse.Namespace) -> int:
    from storage.stsp_synthetic import write_synthetic_stsp

    if args.per_class < 1 or args.train_per_class < 1:
        raise UsageError("--per-class and --train-per-class must be at least 1")
    root = write_synthetic_stsp(args.dir, args.per_class, args.train_per_class)
    print(f"synthetic STSP set written to {root} (use --data-root {root})")
    return EXIT_OK


def run_checkpoints(args: argparse.Namespace) -> int:
    from models.tiny import write_tiny_checkpoints

    root = write_tiny_checkpoints(args.dir, seed=args.seed)
    print(f"tiny random checkpoints written to {root} (set SPIRITLM_CHECKPOINTS_DIR={root})")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {
            "ingest": run_ingest,
            "tokenize": run_tokenize,
            "decode": run_decode,
            "build-corpus": run_build_corpus,
            "checkpoints": run_checkpoints,
            "stsp": run_stsp,
            "stsp-score": run_stsp_score,
            "stsp-synth": run_stsp_synth,
        }
        return commands[args.command](args)
    except UsageError as exc:
        print(f"spiritflow: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except SpiritflowError as exc:
        print(f"spiritflow: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_NOTHING_READABLE


if __name__ == "__main__":
    sys.exit(main())
