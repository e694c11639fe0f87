"""`recfast recommend-all MODEL DATA --out DIR`: the top-k items of every user of DATA through a
model written by `recfast train`, on a Ray cluster (the `ray` extra), written as Parquet.

DATA is a Parquet or CSV file or folder of (user, item) interactions with raw ids (columns named
by --user-col / --item-col); items are mapped to the model's columns through MODEL.meta.json,
as `recfast recommend` does (items the model does not know are dropped). DIR receives Parquet
files of rows (user, item_ids: the raw ids of the k items, scores).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_parser", "run"]

META_SUFFIX = ".meta.json"


def add_parser(sub: Any, positive_int: Any) -> None:
    """Add the `recommend-all` command to the `recfast` subparsers."""
    p = sub.add_parser(
        "recommend-all",
        help="top-k items for every user of DATA on a Ray "
        "cluster, written as Parquet (the ray extra)",
    )
    p.add_argument("model", help="a model written by `recfast train`")
    p.add_argument("data", help="Parquet or CSV file or folder of (user, item) interactions")
    p.add_argument("--out", required=True, help="folder for the Parquet output (new or empty)")
    p.add_argument("-k", type=positive_int, default=100, help="items per user (100)")
    p.add_argument(
        "--address",
        default="local",
        help="'local' starts Ray on this machine; 'auto' joins the running cluster; "
        "or a cluster address such as ray://HOST:10001 (local)",
    )
    p.add_argument("--user-col", default="user", help="user id column (user)")
    p.add_argument("--item-col", default="item", help="item id column (item)")
    p.add_argument("--include-seen", action="store_true", help="allow already seen items")
    p.add_argument("--batch-size", type=positive_int, default=1024, help="users per batch")
    p.add_argument(
        "--item-shards",
        type=positive_int,
        default=1,
        help="split the items into S ranges, each scored by its own workers and merged "
        "into the exact top-k (1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _check_out(out: str) -> None:
    p = Path(out)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise ValueError(f"--out {out}: exists and is not an empty folder")
    parent = p.absolute().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: cannot create a folder in {parent}")


# Seconds to wait for a TCP answer from an explicit cluster address before giving up.
ADDRESS_PROBE_S = 5.0


def _probe(address: str) -> None:
    """Fail fast on an explicit HOST:PORT (or ray://HOST:PORT) nobody answers at: ray.init
    itself retries such an address for minutes (measured: still waiting after 5 minutes)."""
    import socket

    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        if "://" in address or ":" in address:
            raise ValueError(f"--address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=ADDRESS_PROBE_S):
            pass
    except OSError as exc:
        raise ValueError(
            f"--address {address}: cannot reach a Ray cluster (no answer at {host}:{port} "
            f"within {ADDRESS_PROBE_S:g} s: {exc.strerror or exc})"
        ) from None


def _connect(ray: Any, address: str, quiet: bool) -> None:
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level="WARNING")
    if ray.is_initialized():  # called from a program that is already connected
        ray.data.DataContext.get_current().enable_progress_bars = not quiet
        return
    if address not in ("local", "auto"):
        _probe(address)
    try:
        if address == "local":
            ray.init(include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"--address {address}: cannot reach a Ray cluster ({first})") from None
    ray.data.DataContext.get_current().enable_progress_bars = not quiet


def _read(ray: Any, data: str) -> Any:
    path = Path(data)
    if not path.exists():
        raise FileNotFoundError(f"{data}: no such file or directory")
    files = [path] if path.is_file() else sorted(q for q in path.rglob("*") if q.is_file())
    suffixes = {q.suffix.lower() for q in files}
    if suffixes & {".parquet", ".pq"}:
        return ray.data.read_parquet(str(path))
    if suffixes & {".csv"}:
        return ray.data.read_csv(str(path))
    raise ValueError(f"{data}: no .parquet or .csv files")


def run(args: argparse.Namespace) -> int:
    """Run `recfast recommend-all`; returns the exit status (errors raise, as in `recfast`)."""
    from . import distributed
    from .models import load_model

    ray = distributed.require_ray()
    model_path = Path(args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: no such model file")
    _check_out(args.out)
    model = load_model(model_path)  # a file of another kind is a ValueError naming it
    meta_path = Path(str(model_path) + META_SUFFIX)
    raw_items: np.ndarray | None = None
    if meta_path.is_file():
        try:
            raw_items = np.asarray(json.loads(meta_path.read_text("utf-8"))["item_ids"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"{meta_path}: not a model description written by `recfast train`"
            ) from None
        if len(raw_items) != model.n_items_:
            raise ValueError(
                f"{meta_path} lists {len(raw_items)} items but the model has {model.n_items_}"
            )
    _connect(ray, args.address, args.quiet)
    ds = _read(ray, args.data)
    names = ds.schema().names
    for flag, col in (("--user-col", args.user_col), ("--item-col", args.item_col)):
        if col not in names:
            raise ValueError(f"{flag} {col}: no such column in {args.data} (columns: {names})")
    ds = ds.select_columns([args.user_col, args.item_col])
    user_col, item_col = args.user_col, args.item_col
    if raw_items is not None:
        column_of = {_key(v): j for j, v in enumerate(raw_items.tolist())}

        def to_columns(b: dict) -> dict:
            cols = np.array([column_of.get(_key(v), -1) for v in b[item_col].tolist()], np.int64)
            keep = cols >= 0
            return {user_col: b[user_col][keep], item_col: cols[keep]}

        ds = ds.map_batches(to_columns, batch_format="numpy")
    out = distributed.recommend_all(
        model,
        ds,
        min(args.k, model.n_items_),
        filter_seen=not args.include_seen,
        user_column=user_col,
        item_column=item_col,
        item_shards=args.item_shards,
        batch_size=args.batch_size,
    )
    if raw_items is not None:
        lookup = raw_items

        def to_raw(b: Any) -> Any:
            import pyarrow as pa

            ids = b.column("item_ids").combine_chunks()
            flat = ids.flatten().to_numpy()
            raw = pa.array(
                np.asarray(np.where(flat >= 0, lookup[np.maximum(flat, 0)], None)).tolist()
            )
            return b.set_column(1, "item_ids", pa.ListArray.from_arrays(ids.offsets, raw))

        out = out.map_batches(to_raw, batch_format="pyarrow")
    out.write_parquet(args.out)
    written = ray.data.read_parquet(args.out).count() if any(Path(args.out).iterdir()) else 0
    print(f"wrote top-{args.k} items for {written} users -> {args.out}")
    return 0


def _key(v: Any) -> Any:
    """Ids compare as ints when they spell one (JSON, CSV and Parquet ids alike)."""
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return v
    return v
