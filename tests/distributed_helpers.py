"""Shared pieces of the Ray tests: importing ray (required in CI), a deadline on every wait,
collecting a result dataset, and the single-process answers to compare with."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest


def import_ray() -> Any:
    """ray, or a skip outside CI; in CI (where .ci/run installs the ray extra) a missing ray is
    a failure, never a skip."""
    if os.environ.get("CI"):
        import ray

        return ray
    return pytest.importorskip("ray", reason="needs the ray extra (pip install recfast[ray])")


def within(seconds: float, fn: Callable[[], Any]) -> Any:
    """fn(), failing the test (instead of hanging the suite) when it takes over `seconds`."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        import faulthandler
        import sys

        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)  # where it hangs
        pytest.fail(f"the Ray job did not finish within {seconds} s (hung?)")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def collect(ds: Any, id_column: str = "id", seconds: float = 120) -> tuple[np.ndarray, ...]:
    """(ids, item_ids (B, k), scores (B, k)) of a result dataset, sorted by query id, after
    checking that no query id appears twice."""
    df = within(seconds, ds.to_pandas)
    if len(df) == 0:
        return np.empty(0, np.int64), np.empty((0, 0), np.int64), np.empty((0, 0), np.float32)
    df = df.sort_values(id_column, kind="stable")
    qids = df[id_column].to_numpy()
    assert len(np.unique(qids)) == len(qids), "a query came out twice"
    ids = np.stack([np.asarray(v, np.int64) for v in df["item_ids"]])
    scores = np.stack([np.asarray(v, np.float32) for v in df["scores"]])
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    return qids, ids, scores


def query_rows(q: np.ndarray, exclude: list[np.ndarray] | None = None) -> list[dict[str, Any]]:
    rows = []
    for i in range(q.shape[0]):
        row: dict[str, Any] = {"id": i, "vector": q[i]}
        if exclude is not None:
            row["seen"] = exclude[i]
        rows.append(row)
    return rows


def adversarial_items(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Standard normal rows with exact duplicates (ties), a zero row and huge / tiny rows."""
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[1::7] = x[0]  # many exact ties with item 0
    x[3] = 0.0
    x[5] *= 1e15
    x[6] *= 1e-15
    return x


def random_exclusions(rng: np.random.Generator, b: int, n: int) -> list[np.ndarray]:
    """Per-query excluded ids: empty rows, duplicates, and a row excluding every item."""
    out = []
    for i in range(b):
        if i % 5 == 0:
            out.append(np.empty(0, np.int64))
        elif i == 1:
            out.append(np.arange(n, dtype=np.int64))
        else:
            e = rng.integers(0, n, size=int(rng.integers(1, 40)))
            out.append(np.concatenate([e, e[:3]]).astype(np.int64))  # duplicates
    return out
