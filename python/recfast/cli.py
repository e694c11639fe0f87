"""The `recfast` command (also `python -m recfast`).

    recfast train DATA --out MODEL [--model autoencoder|ease|popularity] [--epochs N] ...
    recfast recommend MODEL DATA USER [USER ...] [-k 10] [--items TITLES] [--explain]
    recfast recommend-all MODEL DATA --out DIR [-k 100] [--address local|auto|ADDRESS]
    recfast evaluate DATA [--heldout-users 0.1] [--seed 0] [--epochs N] ...
    recfast bench [bench options]          (the top-k benchmark, `python -m recfast.bench`)

DATA is a MovieLens file or folder (`--layout movielens`), a CSV (`--layout csv`, columns named
with --user-col/--item-col/--rating-col/--time-col) or a Parquet file; `--layout auto` (the
default) picks by name. `train` writes MODEL and, next to it, MODEL.meta.json with the raw item
ids of the model's columns, so that `recommend` can map histories and results back to raw ids.

A user mistake (missing file, bad column, unknown user, bad option) prints one line
`recfast: error: ...` on stderr and returns a non-zero status (2 for bad options, 1 otherwise).
Options, output paths (--out, --json) and model settings are checked before any data is read or
model trained.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["main"]

MODELS = ("autoencoder", "ease", "popularity")
META_SUFFIX = ".meta.json"
_MOVIELENS_NAMES = ("u.data", "ratings.dat", "ratings.csv")


class UsageError(Exception):
    """A bad command line (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing the usage block and exiting."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# --------------------------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------------------------


_MAX_SEED = 2**63 - 1  # torch and NumPy take seeds up to 64 bits; int64 everywhere


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _heldout(text: str) -> int | float:
    what = "a count (an integer >= 1) or a fraction in (0, 0.5)"
    value = _number(text, what)
    if value >= 1 and value == int(value):
        return int(value)
    if 0 < value < 0.5:
        return value
    raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")


def _integer(text: str, minimum: int, maximum: int | None = None) -> int:
    what = (
        f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    )
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _integer(text, 1)


def _count(text: str) -> int:
    return _integer(text, 0)


def _seed(text: str) -> int:
    return _integer(text, 0, _MAX_SEED)


def _positive_float(text: str) -> float:
    value = _number(text, "a finite number > 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    return _number(text, "a finite number")


def _fraction(text: str) -> float:
    value = _number(text, "a number in (0, 1)")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _float_list(text: str) -> list[float]:
    what = "comma-separated finite numbers > 0"
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return values


def _model_list(text: str) -> list[str]:
    names = list(dict.fromkeys(v.strip().lower() for v in text.split(",") if v.strip()))
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    return names


def _separator(text: str) -> str:
    sep = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if len(sep) != 1 or sep in '\r\n"':
        raise argparse.ArgumentTypeError(
            f"expected one character other than a quote or a line "
            f"break (or '\\t' for a tab), got {text!r}"
        )
    return sep


def _device(text: str) -> str:
    if re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--layout",
        choices=("auto", "movielens", "csv", "parquet"),
        default="auto",
        help="auto: movielens for a folder or u.data/ratings.dat/ratings.csv, "
        "parquet for *.parquet, else csv",
    )
    g.add_argument("--user-col", default="user", help="csv/parquet: user id column (user)")
    g.add_argument("--item-col", default="item", help="csv/parquet: item id column (item)")
    g.add_argument("--rating-col", default=None, help="csv/parquet: rating or weight column")
    g.add_argument("--time-col", default=None, help="csv/parquet: timestamp column")
    g.add_argument(
        "--sep",
        type=_separator,
        default=",",
        help="csv: field separator, one character; '\\t' for a tab (,)",
    )


def _add_filter_args(p: argparse.ArgumentParser, *, protocol: bool) -> None:
    g = p.add_argument_group("filters")
    if protocol:
        g.add_argument(
            "--rating-above",
            type=_finite_float,
            default=None,
            help="keep ratings > this (default 3.5 when the data has ratings)",
        )
        g.add_argument(
            "--min-user-interactions",
            type=_count,
            default=5,
            help="keep users with at least this many items (5)",
        )
    else:
        g.add_argument(
            "--rating-above", type=_finite_float, default=None, help="keep ratings > this"
        )
        g.add_argument(
            "--min-user-interactions",
            type=_count,
            default=0,
            help="keep users with at least this many items",
        )
    g.add_argument("--min-rating", type=_finite_float, default=None, help="keep ratings >= this")
    g.add_argument(
        "--min-item-interactions",
        type=_count,
        default=0,
        help="keep items with at least this many users",
    )


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="AutoEncoder epochs (default: the model's)",
    )
    g.add_argument(
        "--variant",
        choices=("hybrid", "dae", "vae", "ae"),
        default=None,
        help="AutoEncoder variant (default: the model's)",
    )
    g.add_argument("--latent-dim", type=_positive_int, default=None, help="AutoEncoder latent size")
    g.add_argument("--batch-size", type=_positive_int, default=None, help="AutoEncoder batch size")
    g.add_argument("--lr", type=_positive_float, default=None, help="AutoEncoder learning rate")
    g.add_argument(
        "--device", type=_device, default="auto", help="AutoEncoder device: auto, cpu, cuda, cuda:N"
    )
    g.add_argument("--seed", type=_seed, default=0, help="random seed (0)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _parser() -> _Parser:
    parser = _Parser(prog="recfast", description="Recommenders on recfast's native top-k.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"recfast {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("train", help="train a model on an interactions file and save it")
    p.add_argument("data", help="interactions file or MovieLens folder")
    p.add_argument("--out", required=True, help="where to write the model")
    p.add_argument("--model", choices=MODELS, default="autoencoder", help="(autoencoder)")
    p.add_argument("--l2", type=_positive_float, default=500.0, help="EASE regularization (500)")
    _add_data_args(p)
    _add_filter_args(p, protocol=False)
    _add_model_args(p)

    p = sub.add_parser("recommend", help="top-k items for users, from their histories in DATA")
    p.add_argument("model", help="a model written by `recfast train`")
    p.add_argument("data", help="interactions file holding the users' histories")
    p.add_argument("users", nargs="+", help="raw user ids")
    p.add_argument("-k", type=_positive_int, default=10, help="items per user (10)")
    p.add_argument(
        "--items",
        default=None,
        help="MovieLens titles file or folder (u.item, movies.dat, movies.csv)",
    )
    p.add_argument("--include-seen", action="store_true", help="allow already seen items")
    p.add_argument(
        "--explain",
        action="store_true",
        help="add a column 'because you liked A, B, C': the history items that "
        f"raised each item's score most (up to {EXPLAIN_ITEMS}; EASE and "
        "AutoEncoder models)",
    )
    _add_data_args(p)

    p = sub.add_parser(
        "evaluate",
        help="the strong-generalization protocol (docs/evaluation.md): AutoEncoder vs EASE vs "
        "Popularity on held-out users",
    )
    p.add_argument("data", help="interactions file or MovieLens folder")
    p.add_argument(
        "--heldout-users",
        type=_heldout,
        default=0.1,
        help="validation and test users each: a count or a fraction (0.1)",
    )
    p.add_argument(
        "--fold-in",
        type=_fraction,
        default=0.8,
        help="share of a held-out user's items given as input (0.8)",
    )
    p.add_argument(
        "--models",
        type=_model_list,
        default=list(MODELS),
        help="comma-separated subset of autoencoder,ease,popularity",
    )
    p.add_argument(
        "--ease-l2",
        type=_float_list,
        default=[30.0, 100.0, 300.0, 1000.0],
        help="EASE lambdas tried; the best on validation NDCG@100 is used",
    )
    p.add_argument(
        "--ks",
        type=_positive_int,
        nargs="+",
        default=None,
        help="cut-offs, each at most the number of items (default: those of 20 50 100 that are)",
    )
    p.add_argument("--json", default=None, help="also write all metrics to this JSON file")
    _add_data_args(p)
    _add_filter_args(p, protocol=True)
    _add_model_args(p)

    from .cli_distributed import add_parser as _add_recommend_all

    _add_recommend_all(sub, _positive_int)
    sub.add_parser("bench", help="the top-k benchmark (see `recfast bench --help`)", add_help=False)
    return parser


# --------------------------------------------------------------------------------------------
# shared steps
# --------------------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Any:
    from . import data

    path = Path(args.data)
    layout = args.layout
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if layout == "auto":
        if path.is_dir() or path.name in _MOVIELENS_NAMES:
            layout = "movielens"
        elif path.suffix.lower() in (".parquet", ".pq"):
            layout = "parquet"
        else:
            layout = "csv"
    if layout == "movielens":
        return data.load_movielens(path)
    cols = dict(
        user_col=args.user_col,
        item_col=args.item_col,
        rating_col=args.rating_col,
        time_col=args.time_col,
    )
    if layout == "parquet":
        return data.Interactions.from_parquet(path, **cols)
    return data.Interactions.from_csv(path, sep=args.sep, **cols)


def _filter(d: Any, args: argparse.Namespace, *, protocol: bool) -> Any:
    rating_above = args.rating_above
    if d.ratings is None and (rating_above is not None or args.min_rating is not None):
        flag = "--rating-above" if rating_above is not None else "--min-rating"
        raise ValueError(
            f"{flag} needs ratings, and {args.data} was read without any (name the "
            f"rating column with --rating-col)"
        )
    if protocol and rating_above is None and d.ratings is not None:
        rating_above = 3.5
    f = d.filter(
        min_rating=args.min_rating,
        rating_above=rating_above,
        min_user_interactions=args.min_user_interactions,
        min_item_interactions=args.min_item_interactions,
    )
    if len(f) == 0:
        raise ValueError(f"{args.data}: no interactions left after filtering")
    return f


def _make_model(name: str, args: argparse.Namespace, *, l2: float = 500.0) -> Any:
    from . import models

    if name == "popularity":
        return models.Popularity()
    if name == "ease":
        return models.EASE(l2=l2)
    _check_device(args.device)
    kwargs: dict[str, Any] = dict(
        random_state=args.seed, verbose=not args.quiet, device=args.device
    )
    for key in ("epochs", "variant", "latent_dim", "batch_size", "lr"):
        value = getattr(args, key)
        if value is not None:
            kwargs[key] = value
    return models.AutoEncoder(**kwargs)


def _check_device(device: str) -> None:
    """--device names a device torch has here (CUDA built in, the index in range)."""
    if not device.startswith("cuda"):
        return
    from .models._torch import require_torch

    torch = require_torch()
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch has no CUDA here; use --device cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"--device {device}: there are {torch.cuda.device_count()} CUDA "
            f"device(s) here, numbered from 0"
        )


def _check_output(path: str, flag: str, *, data: str | None = None) -> None:
    """Fail now, before any work, when `path` cannot be written as a file: it is a folder, its
    folder is missing or not writable, or it is the input data (which it would replace)."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; expected a file name")
    folder = p.parent
    if not folder.exists():
        raise ValueError(f"{flag} {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{flag} {path}: {folder} is not a folder")
    if data is not None and p.exists() and Path(data).exists() and p.samefile(data):
        raise ValueError(f"{flag} {path}: is the input data, which writing it would replace")
    try:  # what writing it will do: a temporary file in that folder, renamed over the name
        fd, tmp = tempfile.mkstemp(prefix=".recfast-", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ValueError(
            f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc})"
        ) from None


def _write_json(path: str, payload: Any) -> None:
    from ._io import atomic_write

    text = json.dumps(payload, indent=1).encode("utf-8")
    atomic_write(path, lambda f: f.write(text))


def _is_out_of_memory(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    text = str(exc).lower()
    return "OutOfMemoryError" in names or "can't allocate memory" in text or "out of memory" in text


def _fit(model: Any, X: sp.csr_matrix, **kwargs: Any) -> Any:
    """model.fit, with torch's allocation failures as a MemoryError naming the flags."""
    try:
        return model.fit(X, **kwargs)
    except RuntimeError as exc:
        if not _is_out_of_memory(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MemoryError(
            f"{type(model).__name__} ran out of memory while training on "
            f"{X.shape[0]} users x {X.shape[1]} items ({first}); lower "
            f"--latent-dim or --batch-size"
        ) from None


def _check_autoencoder_fits(model: Any, n_items: int) -> None:
    """Refuse, before training, an AutoEncoder whose weights cannot fit in memory (a typo such
    as --latent-dim 1000000000 would otherwise fail inside torch after the data is read)."""
    from .models import AutoEncoder

    if not isinstance(model, AutoEncoder):
        return
    from .models._torch import require_torch
    from .models.autoencoder import uses_full_rank, weight_count
    from .models.ease import available_memory_bytes

    cfg = model.config
    # weights, their gradients and Adam's two moments; the full-rank hybrid's item-item fit
    # holds about four more items x items matrices
    need = 4 * 4 * weight_count(cfg, n_items)
    if uses_full_rank(cfg, n_items):
        need += 4 * 4 * n_items * n_items
    device = model.device
    torch = require_torch()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        avail = int(torch.cuda.mem_get_info(torch.device(device))[0])
        where = f"on {device}"
    else:
        avail = available_memory_bytes()
        where = "in memory"
    if need > avail:
        raise MemoryError(
            f"--latent-dim {cfg.latent_dim}: the AutoEncoder's weights for "
            f"{n_items} items and their optimizer state need about "
            f"{need / 2**30:.3g} GiB but {avail / 2**30:.3g} GiB is free {where}; "
            f"lower --latent-dim"
        )


def _history(d: Any, user_rows: np.ndarray, columns: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """Binary histories of the given internal users over the model's columns, one row each.

    user_rows[r] is the internal index of output row r's user, or -1 for an empty history;
    columns[i] is the model column of internal item i, or -1 when the model has no such item.
    """
    keep = columns[d.items] >= 0
    full = sp.csr_matrix(
        (np.ones(int(keep.sum()), np.float32), (d.users[keep], columns[d.items[keep]])),
        shape=(d.n_users, n_cols),
    )
    full.sum_duplicates()
    full.data[:] = 1.0
    m = full[np.maximum(user_rows, 0)]
    return sp.csr_matrix(sp.diags((user_rows >= 0).astype(np.float32)) @ m)


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_output(args.out, "--out", data=args.data)
    meta_path = str(out) + META_SUFFIX
    _check_output(meta_path, "--out", data=args.data)
    model = _make_model(args.model, args, l2=args.l2)  # its settings are checked before the data
    d = _filter(_load(args), args, protocol=False)
    X = d.matrix()
    _check_autoencoder_fits(model, X.shape[1])
    t0 = time.perf_counter()
    _fit(model, X)
    seconds = time.perf_counter() - t0
    model.save(out)
    _write_json(
        meta_path,
        {
            "model": type(model).__name__,
            "item_ids": d.item_ids.tolist(),
            "data": str(args.data),
            "filters": {"min_rating": args.min_rating, "rating_above": args.rating_above},
        },
    )
    print(
        f"trained {type(model).__name__} on {d.n_users} users x {d.n_items} items "
        f"({X.nnz} interactions) in {seconds:.1f} s -> {out}"
    )
    return 0


def _read_meta(meta_path: Path, n_items: int) -> tuple[np.ndarray, dict[str, Any]]:
    """(raw item id of each model column, the training filters) from MODEL.meta.json."""
    bad = (
        f"{meta_path}: not a model description written by `recfast train` (expected JSON "
        f"with 'item_ids', a list of {n_items} distinct ids)"
    )
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except ValueError:  # not JSON, or not UTF-8
        raise ValueError(bad) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("item_ids"), list):
        raise ValueError(bad)
    ids = meta["item_ids"]
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in ids):
        raise ValueError(bad)
    if len({_id_key(v) for v in ids}) != len(ids):
        raise ValueError(f"{meta_path}: 'item_ids' repeats an id")
    if len(ids) != n_items:
        raise ValueError(f"{meta_path} lists {len(ids)} items but the model has {n_items}")
    filters = meta.get("filters") or {}
    if not isinstance(filters, dict):
        raise ValueError(bad)
    for key in ("min_rating", "rating_above"):
        value = filters.get(key)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"{meta_path}: filters.{key} must be a number or null, got {value!r}")
    model_items = np.empty(len(ids), dtype=object)
    model_items[:] = ids
    return model_items, dict(filters)


def _cmd_recommend(args: argparse.Namespace) -> int:
    from .models import load_model

    model_path = Path(args.model)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: no such model file")
    model = load_model(model_path)
    if args.explain and not hasattr(model, "explain"):
        raise ValueError(
            f"--explain needs an EASE or AutoEncoder model; {model_path} holds a "
            f"{type(model).__name__}"
        )
    titles = _titles(args.items) if args.items else None
    d = _load(args)
    meta_path = Path(str(model_path) + META_SUFFIX)
    filters: dict[str, Any] = {}
    if meta_path.is_file():
        model_items, filters = _read_meta(meta_path, model.n_items_)
    else:
        model_items = d.item_ids.astype(object)
        if len(model_items) != model.n_items_:
            raise ValueError(
                f"{model_path} has {model.n_items_} item columns but {args.data} "
                f"has {len(model_items)} items, and {meta_path.name} (written by "
                f"`recfast train`) is missing"
            )
    d.user_index(args.users)  # every requested user must be in the data
    if filters.get("min_rating") is not None or filters.get("rating_above") is not None:
        if d.ratings is not None:  # the histories the model was trained on
            d = d.filter(
                min_rating=filters.get("min_rating"), rating_above=filters.get("rating_above")
            )
    # a user whose every rating was filtered out gets an empty history (a cold start)
    present = {_id_key(v): j for j, v in enumerate(d.user_ids.tolist())}
    rows = np.array([present.get(_id_key(u), -1) for u in args.users], dtype=np.int64)
    column_of = {_id_key(v): j for j, v in enumerate(model_items.tolist())}
    columns = np.array([column_of.get(_id_key(v), -1) for v in d.item_ids.tolist()], dtype=np.int64)
    X = _history(d, rows, columns, model.n_items_)
    # more than n_items would only pad every row with "no item" (-1), never printed
    k = max(1, min(args.k, model.n_items_))
    res = model.recommend(X, k=k, filter_seen=not args.include_seen)
    header = ["user", "rank", "item", "score"] + (["title"] if titles is not None else [])
    header += ["explanation"] if args.explain else []
    print("\t".join(header))
    for r, user in enumerate(args.users):
        for rank, (item, score) in enumerate(zip(res.ids[r].tolist(), res.scores[r].tolist()), 1):
            if item < 0:
                break
            raw = model_items[item]
            line = [str(user), str(rank), str(raw), f"{score:.6g}"]
            if titles is not None:
                line.append(titles.get(_id_key(raw), ""))
            if args.explain:
                line.append(_because(model, X[r], item, model_items, titles))
            print("\t".join(line))
    return 0


# History items named per explained recommendation (`recommend --explain`).
EXPLAIN_ITEMS = 3


def _because(
    model: Any,
    history: sp.csr_matrix,
    item: int,
    model_items: np.ndarray,
    titles: dict[Any, str] | None,
) -> str:
    """'because you liked A, B, C': the history items of positive contribution, largest first,
    by title when the titles file has one, else by raw id."""
    e = model.explain(history, item, n=EXPLAIN_ITEMS)
    names = []
    for j in e.ids[e.contributions > 0].tolist():
        raw = model_items[j]
        title = titles.get(_id_key(raw)) if titles is not None else None
        names.append(title or str(raw))
    return "because you liked " + ", ".join(names) if names else ""


def _id_key(v: Any) -> Any:
    """Ids compare as ints when they spell one (MovieLens ids from json, csv and titles)."""
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return v
    return v


def _titles(path: str) -> dict[Any, str]:
    from .data import load_movielens_titles

    return {_id_key(k): v for k, v in load_movielens_titles(path).items()}


DEFAULT_KS = (20, 50, 100)


def _heldout_count(value: int | float, n_users: int) -> int:
    """The validation (and test) user count of --heldout-users, as the split computes it."""
    if isinstance(value, float):
        return max(1, int(round(value * n_users)))
    return int(value)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import strong_generalization_split
    from .metrics import evaluate, ndcg_at_k

    if args.json:
        _check_output(args.json, "--json", data=args.data)
    for name in args.models:  # the settings of each model are checked before the data
        if name == "autoencoder":
            _make_model(name, args)
    d = _filter(_load(args), args, protocol=True)
    X = d.matrix()
    if args.ks is None:
        ks = [k for k in DEFAULT_KS if k <= d.n_items] or [d.n_items]
    else:
        ks = sorted(set(args.ks))
        if ks[-1] > d.n_items:
            raise ValueError(
                f"--ks {ks[-1]}: more than the {d.n_items} items of {args.data} (after filtering)"
            )
    n_heldout = _heldout_count(args.heldout_users, d.n_users)
    if 2 * n_heldout >= d.n_users:
        raise ValueError(
            f"--heldout-users {args.heldout_users}: holding out {n_heldout} "
            f"validation and {n_heldout} test users leaves no training users among "
            f"the {d.n_users} users of {args.data}"
        )
    few = int((np.diff(X.indptr) < 2).sum())
    if few:
        raise ValueError(
            f"{args.data}: {few} user(s) have fewer than 2 items after filtering; "
            f"held-out users need 2 or more (raise --min-user-interactions)"
        )
    split = strong_generalization_split(
        X, n_heldout_users=args.heldout_users, fold_in=args.fold_in, seed=args.seed
    )
    print(
        f"{args.data}: {d.n_users} users x {d.n_items} items, {len(d)} interactions; "
        f"train {split.train.shape[0]}, validation {split.valid_input.shape[0]}, "
        f"test {split.test_input.shape[0]} users (seed {args.seed})",
        flush=True,
    )
    results: dict[str, dict[str, float]] = {}
    for name in args.models:
        t0 = time.perf_counter()
        extra = ""
        if name == "ease":
            best = None
            for l2 in args.ease_l2:
                m = _fit(_make_model("ease", args, l2=l2), split.train)
                ids = m.recommend(split.valid_input, k=100).ids
                score = ndcg_at_k(ids, split.valid_target, min(100, ids.shape[1]))
                if best is None or score > best[0]:
                    best = (score, l2, m)
            assert best is not None  # --ease-l2 is never empty
            model = best[2]
            extra = f"l2={best[1]:g}"
        elif name == "autoencoder":
            model = _make_model(name, args)
            _check_autoencoder_fits(model, X.shape[1])
            _fit(model, split.train, validation=(split.valid_input, split.valid_target))
            if getattr(model, "best_epoch_", None) is not None:
                extra = f"best epoch {model.best_epoch_}"
        else:
            model = _fit(_make_model(name, args), split.train)
        fit_s = time.perf_counter() - t0
        label = {"autoencoder": "AutoEncoder", "ease": "EASE", "popularity": "Popularity"}[name]
        results[label] = dict(
            evaluate(model, split.test_input, split.test_target, ks=ks), fit_seconds=fit_s
        )
        if extra:
            results[label]["note"] = extra  # type: ignore[assignment]
    _print_table(results, ks)
    if args.json:
        _write_json(args.json, {"data": str(args.data), "seed": args.seed, "results": results})
    return 0


def _print_table(results: dict[str, dict[str, Any]], ks: Sequence[int]) -> None:
    cols = [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]
    names = {c: c.replace("recall@", "R@").replace("ndcg@", "NDCG@") for c in cols}
    width = max(len(n) for n in results) if results else 5
    print(f"{'model':<{width}}  " + "  ".join(f"{names[c]:>8}" for c in cols) + "     fit s")
    for label, r in results.items():
        row = "  ".join(f"{r[c]:>8.4f}" for c in cols)
        note = f"  ({r['note']})" if "note" in r else ""
        print(f"{label:<{width}}  {row}  {r['fit_seconds']:>8.1f}{note}")


def _cmd_recommend_all(args: argparse.Namespace) -> int:
    from .cli_distributed import run

    return run(args)


_COMMANDS = {
    "train": _cmd_train,
    "recommend": _cmd_recommend,
    "evaluate": _cmd_evaluate,
    "recommend-all": _cmd_recommend_all,
}


def _raise_usage(message: str) -> Any:
    raise UsageError(f"bench: {message} (see `recfast bench --help`)")


def _check_bench_args(argv: list[str]) -> None:
    """Parse `recfast bench` options with the benchmark's own parser, its errors as one line,
    and check the numbers and the --out folder before the benchmark starts any work."""
    from .bench import runner as bench

    parser = bench._parser()
    parser.error = _raise_usage  # type: ignore[method-assign]  # one line, not the usage block
    args = parser.parse_args(argv)
    for flag, minimum in (("n_items", 1), ("repeats", 1), ("seed", 0)):
        value = getattr(args, flag, None)
        if value is not None and value < minimum:
            raise UsageError(
                f"bench: argument --{flag.replace('_', '-')}: expected an integer "
                f">= {minimum}, got {value}"
            )
    if getattr(args, "seed", None) is not None and args.seed > _MAX_SEED:
        raise UsageError(f"bench: argument --seed: expected an integer <= {_MAX_SEED}")
    for flag in ("dims", "batches", "ks"):
        values = getattr(args, flag, None)
        if values is not None and (not values or min(values) < 1):
            raise UsageError(f"bench: argument --{flag}: expected positive integers, got {values}")
    for flag, strict in (("slow_seconds", False), ("tol", False), ("worker_timeout", True)):
        value = getattr(args, flag, None)
        if value is not None and (not math.isfinite(value) or value < 0 or (strict and value == 0)):
            raise UsageError(
                f"bench: argument --{flag.replace('_', '-')}: expected a finite "
                f"number {'>' if strict else '>='} 0, got {value}"
            )
    out = getattr(args, "out", None)
    if out is not None:  # a folder, created (with its parents) when the run ends
        p = Path(out)
        if p.exists() and not p.is_dir():
            raise ValueError(f"--out {out}: is a file; the benchmark writes a folder there")
        existing = p if p.exists() else next(q for q in p.absolute().parents if q.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise ValueError(f"--out {out}: cannot create a folder in {existing}")


def _say(message: str) -> None:
    print("recfast: error: " + " ".join(str(message).split()), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `recfast` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "bench":  # its own options, parsed by recfast.bench
            from . import bench

            _check_bench_args(argv[1:])
            return int(bench.main(argv[1:]) or 0)
        args = _parser().parse_args(argv)
        return _COMMANDS[args.command](args)
    except UsageError as exc:
        _say(str(exc))
        return 2
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except FileNotFoundError as exc:
        _say(str(exc) if exc.filename is None else f"{exc.filename}: no such file")
        return 1
    except (ValueError, OSError, MemoryError, ImportError) as exc:
        _say(str(exc) or type(exc).__name__)
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("RECFAST_TRACEBACK"):
            raise
        _say(
            f"unexpected {type(exc).__name__}: {exc} (set RECFAST_TRACEBACK=1 to see where; "
            f"please report it)"
        )
        return 1
