"""Safe loading of the released checkpoint formats: tensors only, configs without ``eval``.

``torch.load(weights_only=True)`` refuses pickled code; ``.safetensors`` is preferred when present.
Every loaded file gets a sha256 fingerprint that the rows it produces carry.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from models.errors import CheckpointError

log = logging.getLogger(__name__)
M = TypeVar("M", bound=torch.nn.Module)

CHECKPOINTS_ENV = "SPIRITLM_CHECKPOINTS_DIR"
CACHE_ENV = "SPIRITFLOW_CACHE_DIR"
# Plain numpy arrays (k-means centroids) are data, not code: allow exactly what rebuilding them needs.
_NUMPY_ALLOWED: list[Any] = [
    np._core.multiarray._reconstruct,  # type: ignore[attr-defined]
    np.ndarray,
    np.dtype,
    *{type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64)},
]


def checkpoints_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """``path``, else ``$SPIRITLM_CHECKPOINTS_DIR``; a clear error when neither is usable."""
    chosen = path or os.environ.get(CHECKPOINTS_ENV)
    if not chosen:
        raise CheckpointError(f"no checkpoints: pass --checkpoints DIR or set {CHECKPOINTS_ENV}")
    root = Path(chosen).expanduser().resolve()
    if not root.is_dir():
        raise CheckpointError(f"{root}: checkpoints folder not found")
    return root


def require(path: Path) -> Path:
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    return path


def load_tensors(path: Path) -> Any:
    """Load a ``.pt``/``.bin`` (weights only) or ``.safetensors`` file; errors name the file."""
    require(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        with torch.serialization.safe_globals(_NUMPY_ALLOWED):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})"
        ) from exc


def weights_file(folder: Path, stem: str = "pytorch_model") -> Path:
    """``model.safetensors`` when present, else ``<stem>.bin`` (the HF conventions)."""
    for candidate in (
        folder / "model.safetensors",
        folder / f"{stem}.safetensors",
        folder / f"{stem}.bin",
    ):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"{folder}: no model.safetensors or {stem}.bin")


def check_readable(path: Path) -> Path:
    """Cheap structural check of a weights file (no tensors read): a torch zip archive with its
    pickle, a legacy torch pickle, or a safetensors header. Lets a run fail before any work."""
    require(path)
    problem = None
    if path.suffix == ".safetensors":
        with path.open("rb") as fh:
            head = fh.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < size <= path.stat().st_size - 8:
                problem = "safetensors header length is wrong (truncated or not safetensors)"
            else:
                try:
                    json.loads(fh.read(size))
                except ValueError:
                    problem = "safetensors header is not valid JSON"
    elif path.suffix in (".pt", ".bin", ".pth", ".ckpt"):
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if not any(n.endswith("data.pkl") for n in archive.namelist()):
                    problem = "zip archive without data.pkl (not a torch.save file)"
        else:
            with path.open("rb") as fh:
                if fh.read(1) != b"\x80":
                    problem = "neither a torch zip archive nor a pickle (truncated or corrupt)"
    if problem:
        raise CheckpointError(f"{path}: cannot load checkpoint ({problem})")
    return path


def build_loaded(
    factory: Callable[[], M], state: dict[str, torch.Tensor]
) -> tuple[M, list[str], list[str]]:
    """``factory()`` built on the meta device, then given the checkpoint's tensors.

    Skips the random initialisation that the checkpoint overwrites anyway (≈ 1.4 s for each
    95 M-parameter model here, most of loading). Tensors are cast to the model's dtypes; parameters
    the checkpoint lacks become zeros and are returned as missing, like ``load_state_dict``.
    """
    with torch.device("meta"):
        model = factory()
    expected = model.state_dict()
    cast = {
        k: v.to(expected[k].dtype) if k in expected and v.is_floating_point() else v
        for k, v in state.items()
    }
    missing, unexpected = model.load_state_dict(cast, strict=False, assign=True)
    for name in missing:
        owner, _, leaf = name.rpartition(".")
        module = model.get_submodule(owner)
        tensor = torch.zeros(expected[name].shape, dtype=expected[name].dtype)
        if leaf in dict(module.named_parameters(recurse=False)):
            module.register_parameter(leaf, torch.nn.Parameter(tensor, requires_grad=False))
        else:
            module.register_buffer(leaf, tensor)
    return model, list(missing), list(unexpected)


def _cache_file() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "spiritflow"
    return Path(os.environ.get(CACHE_ENV) or default).expanduser() / "fingerprints.json"


def _read_cache(file: Path) -> dict[str, str]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@functools.lru_cache(maxsize=64)
def _fingerprint(path: str, size: int, mtime_ns: int, inode: int) -> str:
    key = f"{path}|{size}|{mtime_ns}|{inode}"
    file = _cache_file()
    known = _read_cache(file).get(key)
    if isinstance(known, str) and len(known) == 64:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    value = digest.hexdigest()
    try:  # best effort: a read-only home only costs hashing again next run
        file.parent.mkdir(parents=True, exist_ok=True)
        entries = {k: v for k, v in _read_cache(file).items() if not k.startswith(f"{path}|")}
        entries[key] = value
        fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(entries, fh, sort_keys=True)
            os.replace(tmp, file)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        log.debug("fingerprint cache %s not written: %s", file, exc)
    return value


def fingerprint(path: Path) -> str:
    """sha256 of a checkpoint file, remembered per process and across runs (in
    ``$SPIRITFLOW_CACHE_DIR`` or ``~/.cache/spiritflow``) by path, size, mtime and inode, as
    build tools do: a scheduled run does not re-read gigabytes of unchanged weights."""
    st = require(path).stat()
    return _fingerprint(str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def _eval_node(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.List):
        return [_eval_node(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_eval_node(e) for e in node.elts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _eval_node(node.left), _eval_node(node.right)
        if isinstance(node.op, ast.Add) and isinstance(left, list) and isinstance(right, list):
            return left + right
        if isinstance(node.op, ast.Mult) and isinstance(left, list) and isinstance(right, int):
            return left * right
        if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, list):
            return right * left
    raise ValueError(f"unsupported expression: {ast.dump(node)[:80]}")


def parse_layer_spec(text: str) -> list[tuple[int, ...]]:
    """Evaluate ``"[(512,10,5)] + [(512,3,2)] * 4"`` safely (lists, tuples, numbers, + and * only)."""
    try:
        value = _eval_node(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"conv_feature_layers {text[:60]!r}: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(t, tuple) and len(t) == 3 for t in value):
        raise CheckpointError(
            f"conv_feature_layers {text[:60]!r}: expected a list of (dim, kernel, stride)"
        )
    return value
