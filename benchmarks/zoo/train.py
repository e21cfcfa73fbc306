"""The zoo's train step: run each case once (seed 0, one CPU thread) and keep its trace and
label in the cache, ``CACHE/<case>/trace`` and ``CACHE/<case>/label.json``."""

from __future__ import annotations

import json
import random
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchmarks.zoo.case import Case

from gradientflow.jsonsafe import json_safe

LABEL_FILE = "label.json"
TRACE_DIR = "trace"


def is_trained(case: Case, cache: Path) -> bool:
    return (cache / case.name / LABEL_FILE).is_file()


def train_case(case: Case, cache: Path, seed: int = 0) -> dict[str, Any]:
    """Train ``case``, save its trace and label file; returns the label record.

    A case that raises is recorded with its error (no trace), never silently dropped.
    """
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    folder = cache / case.name
    folder.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "name": case.name,
        "label": case.label,
        "family": case.family,
        "summary": case.summary,
        "seed": seed,
        "torch": torch.__version__,
    }
    start = time.perf_counter()
    try:
        run = case.run(seed)
        run.trace.save(folder / TRACE_DIR, overwrite=True)  # a retrain replaces the old run
        record.update(outcome=run.outcome, verified=run.verified, check=run.check, error=None)
    except Exception as exc:  # a broken case is reported, not hidden
        record.update(outcome={}, verified=False, check="", error=repr(exc))
        record["traceback"] = traceback.format_exc(limit=5)
    record["seconds"] = round(time.perf_counter() - start, 2)
    text = json.dumps(json_safe(record), indent=2, allow_nan=False)
    (folder / LABEL_FILE).write_text(text + "\n")
    return record
