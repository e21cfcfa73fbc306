"""The two JSON files of a run dir, written and checked.

``meta.json`` says what was recorded (layers, metric names, metadata); ``manifest.json`` says
which array files hold it (one entry per complete chunk, with its rows and first/last step, and
the file of each extra, so any extra name is data: files are numbered, never named after it)::

    {"format": "gradientflow-trace", "version": 2,
     "chunks": [{"file": "00000000.npz", "rows": 50, "first_step": 0, "last_step": 49}],
     "extras": [{"name": "bptt/enc lstm/dl_dh", "file": "00000.npy"}]}

>>> doc = json.loads(manifest_bytes([ChunkEntry(0, 2, 0, 1)], {"a b/c": "00000.npy"}))
>>> parse_manifest(doc, "manifest.json")
({0: ChunkEntry(index=0, rows=2, first=0, last=1)}, {'a b/c': '00000.npy'})
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradientflow.errors import GradientFlowError
from gradientflow.jsonsafe import json_safe
from gradientflow.schema import LAYER_METRICS, STEP_SCALARS, LayerInfo
from gradientflow.store_fs import Damage, open_regular, shown

FORMAT = "gradientflow-trace"
FORMAT_VERSION = 2
CHUNK_RE = re.compile(r"^(\d{8})\.npz$")
EXTRA_RE = re.compile(r"^(\d{5,})\.npy$")
MAX_JSON_BYTES = 64 * 1024**2
_LAYER_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "kind": (str,),
    "n_params": (int,),
    "trainable": (bool,),
    "input_activation": (str, type(None)),
    "tied_to": (str, type(None)),
}


@dataclass(frozen=True)
class ChunkEntry:
    """One complete chunk file: its number, rows and first/last step."""

    index: int
    rows: int
    first: int
    last: int

    @property
    def file(self) -> str:
        return f"{self.index:08d}.npz"


@dataclass
class RunIndex:
    """What a run dir holds, as found on load (the writer resumes from it)."""

    layers: list[LayerInfo]
    chunks: list[ChunkEntry] = field(default_factory=list)
    missing: list[ChunkEntry] = field(default_factory=list)
    top: int = -1
    extras: dict[str, str] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    lost_records: int = 0
    unknown_chunks: int = 0

    @property
    def n_records(self) -> int:
        return sum(c.rows for c in self.chunks)


def lose(what: str, index: RunIndex, rows: int) -> None:
    """Count a missing or skipped file (``rows`` -1: a chunk of unknown size)."""
    index.lost.append(what)
    index.lost_records += max(rows, 0)
    index.unknown_chunks += rows < 0


def lost_report(index: RunIndex) -> dict[str, Any]:
    """What a load found missing or damaged, for ``trace.meta["lost_on_load"]``."""
    return {
        "records": index.lost_records,
        "chunks_of_unknown_size": index.unknown_chunks,
        "problems": list(index.lost),
    }


def lost_text(root: Path, index: RunIndex) -> str:
    """The one-line warning for what a load found missing or damaged."""
    unknown = (
        f" and {index.unknown_chunks} chunk(s) of unknown size" if index.unknown_chunks else ""
    )
    return (
        f"Trace.load: {shown(root)}: {len(index.lost)} file(s) missing or damaged, "
        f"{index.lost_records} records lost{unknown}: " + "; ".join(index.lost)
    )


def read_json(path: Path) -> Any:
    """The JSON document in ``path`` (a regular file of at most 64 MiB)."""
    with open_regular(path, MAX_JSON_BYTES, "JSON file") as (fh, size):
        data = fh.read(size + 1)
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise Damage(f"{shown(path)}: not valid JSON ({type(exc).__name__}: {exc})") from exc


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_type(value: Any, types: tuple[type, ...]) -> bool:
    if types == (int,):
        return _is_int(value)
    return isinstance(value, types)


def parse_meta(doc: Any, where: str) -> tuple[int, list[LayerInfo], dict[str, Any]]:
    """``(version, layers, meta)`` from a meta.json document; Damage if malformed."""
    if not isinstance(doc, dict):
        raise Damage(f"{where}: not a JSON object (got {type(doc).__name__})")
    if doc.get("format") != FORMAT:
        raise Damage(f"{where}: not a gradientflow trace (format is not {FORMAT!r})")
    version: Any = doc.get("version")
    if not _is_int(version) or version < 1:
        raise Damage(f"{where}: 'version' must be a positive integer, got {version!r:.40}")
    if version > FORMAT_VERSION:
        raise Damage(
            f"{where}: written by a newer gradientflow (format {version}); upgrade to read it"
        )
    raw = doc.get("layers")
    if not isinstance(raw, list):
        raise Damage(f"{where}: 'layers' must be a list, got {type(raw).__name__}")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise Damage(f"{where}: 'meta' must be an object, got {type(meta).__name__}")
    return version, [_layer(d, i, where) for i, d in enumerate(raw)], meta


def _layer(d: Any, i: int, where: str) -> LayerInfo:
    if not isinstance(d, dict):
        raise Damage(f"{where}: layer {i} is not an object")
    if "name" not in d:
        raise Damage(f"{where}: layer {i} has no 'name'")
    for key, types in _LAYER_TYPES.items():
        if key in d and not _check_type(d[key], types):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise Damage(f"{where}: layer {i}: {key!r} must be {want}, got {d[key]!r:.40}")
    names = {f.name for f in dataclasses.fields(LayerInfo)}
    try:
        return LayerInfo(**{k: v for k, v in d.items() if k in names})
    except (TypeError, ValueError) as exc:
        raise Damage(f"{where}: layer {i}: {exc}") from exc


def parse_manifest(doc: Any, where: str) -> tuple[dict[int, ChunkEntry], dict[str, str]]:
    """``({chunk number: entry}, {extra name: file})`` from a manifest.json document."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise Damage(f"{where}: not a gradientflow manifest")
    chunks, extras = doc.get("chunks", []), doc.get("extras", [])
    if not isinstance(chunks, list) or not isinstance(extras, list):
        raise Damage(f"{where}: 'chunks' and 'extras' must be lists")
    entries: dict[int, ChunkEntry] = {}
    for i, c in enumerate(chunks):
        keys = ("rows", "first_step", "last_step")
        ok = isinstance(c, dict) and isinstance(c.get("file"), str)
        match = CHUNK_RE.match(c["file"]) if ok else None
        if match is None or not all(_is_int(c.get(k)) for k in keys) or c["rows"] < 0:
            raise Damage(f"{where}: chunk entry {i} is malformed")
        entry = ChunkEntry(int(match.group(1)), c["rows"], c["first_step"], c["last_step"])
        if entry.index in entries:
            raise Damage(f"{where}: chunk {c['file']} is listed twice")
        entries[entry.index] = entry
    files: dict[str, str] = {}
    for i, e in enumerate(extras):
        ok = isinstance(e, dict) and isinstance(e.get("name"), str)
        if not ok or not isinstance(e.get("file"), str) or not EXTRA_RE.match(e["file"]):
            raise Damage(f"{where}: extras entry {i} is malformed")
        if e["name"] in files or e["file"] in files.values():
            raise Damage(f"{where}: extra {e['name']!r} or file {e['file']} is listed twice")
        files[e["name"]] = e["file"]
    return entries, files


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode("ascii")


def meta_bytes(layers: Sequence[LayerInfo], meta: Mapping[str, Any]) -> bytes:
    """meta.json's content (metadata made JSON-safe: non-finite floats as strings), checked
    to read back: what a loader would refuse (a layer's field of the wrong type, metadata
    that is no JSON, such as a dict holding itself) is refused here, before anything is
    written.

    >>> meta_bytes([LayerInfo("fc", kind=None)], {})  # type: ignore[arg-type]
    Traceback (most recent call last):
    ...
    gradientflow.errors.GradientFlowError: the trace's meta.json would not load: meta.json: \
layer 0: 'kind' must be str, got None
    """
    try:
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "layers": [json_safe(dataclasses.asdict(x)) for x in layers],
            "metrics": LAYER_METRICS,
            "scalars": STEP_SCALARS,
            "meta": json_safe(dict(meta)),
        }
        data = _dumps(doc)
    except (TypeError, ValueError, RecursionError) as exc:
        raise GradientFlowError(
            f"the trace's metadata cannot be written as JSON: {type(exc).__name__}: {exc}"
        ) from None
    try:
        parse_meta(json.loads(data), "meta.json")
    except Damage as exc:
        raise GradientFlowError(f"the trace's meta.json would not load: {exc.what}") from None
    return data


def manifest_bytes(chunks: Sequence[ChunkEntry], extras: Mapping[str, str]) -> bytes:
    """manifest.json's content."""
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "chunks": [
            {"file": c.file, "rows": c.rows, "first_step": c.first, "last_step": c.last}
            for c in chunks
        ],
        "extras": [{"name": n, "file": f} for n, f in extras.items()],
    }
    return _dumps(doc)
