"""Read an offline W&B run back: the ``.wandb`` transaction log, decoded with wandb's own
protobuf schema (``wandb.proto.wandb_internal_pb2.Record``).

wandb 0.31 ships no Python reader for this file (its reader is in the Go ``wandb-core``), so the
framing is undone here: a 7-byte file header (``:W&B``, magic 0xBEE1, version 0), then LevelDB
log blocks of 32 KiB, each record split in fragments with a 7-byte header (crc32c, length, type:
1 full, 2 first, 3 middle, 4 last). The payloads are parsed by wandb's classes, not by us.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def payloads(path: Path) -> list[bytes]:
    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), (ident, magic, version)
    out: list[bytes] = []
    pos, parts = 7, b""
    while pos + 7 <= len(data):  # a record still being written at the end is left out
        room = BLOCK - pos % BLOCK
        if room < 7:  # the block's tail is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        body = data[pos + 7 : pos + 7 + length]
        if len(body) < length:
            break
        pos += 7 + length
        if kind == 0 and length == 0:
            assert not data[pos:].strip(b"\0"), f"a zero header before the end, at {pos}"
            break
        assert kind in (FULL, FIRST, MIDDLE, LAST), f"record type {kind} at {pos}"
        if kind == FULL:
            out.append(body)
        elif kind == FIRST:
            parts = body
        elif kind == MIDDLE:
            parts += body
        elif kind == LAST:
            out.append(parts + body)
    return out


def read_run(run_dir: Path, timeout: float = 30.0) -> dict[str, Any]:
    """``history``: {step: {key: value}}; ``summary``: {key: value} (last write wins).

    ``run.finish()`` can return before wandb-core has written the file's end: it is read again
    until its ``exit`` record is there (or ``timeout`` seconds have passed)."""
    (path,) = run_dir.glob("*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        out = _read(path)
        if out["exited"] or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def _read(path: Path) -> dict[str, Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    history: dict[int, dict[str, Any]] = {}
    summary: dict[str, Any] = {}
    exited = False
    for raw in payloads(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        exited |= kind == "exit"
        if kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in rec.history.item}
            row.pop("_step", None)
            history.setdefault(int(rec.history.step.num), {}).update(row)
        elif kind == "summary":
            summary.update({_key(i): json.loads(i.value_json) for i in rec.summary.update})
    return {"history": history, "summary": summary, "exited": exited}


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else str(item.key)
