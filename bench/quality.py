"""Recommendation quality on MovieLens under the protocol of docs/evaluation.md (Liang et al. 2018 protocol).

    python bench/quality.py            # 5 seeds, every AutoEncoder variant, EASE, Popularity
    python bench/quality.py --quick    # 1 seed, the default AutoEncoder, Mult-DAE, EASE, Popularity
    python bench/quality.py --required # 5 seeds, the default AutoEncoder, EASE, Popularity
    python bench/quality.py --cold-start  # cold items from genres (+ tags): 5 seeds

Data: ../shared/data/ml-100k/u.data and ../shared/data/ml-latest-small/ratings.csv (relative to
the repository; --data to change). A missing dataset is skipped with a message. Protocol: ratings
> 3.5, users with >= 5 items, 10% validation and 10% test users (80% of each held-out user's
items as the fold-in input, 20% targets), seen items excluded. The AutoEncoders keep their best
epoch by validation NDCG@100; EASE's lambda is chosen on the validation users from a small grid.
Reported: mean +- sd over seeds of test R@20, R@50, NDCG@100 and the fit time in seconds, then
the paired comparison with a baseline (--baseline, EASE by default): every seed's split is shared
by all models, so per seed the difference model - baseline is taken first, then its mean, its sd
over seeds, its range and the number of seeds on which the model was ahead (the seed-to-seed
spread of the split is far larger than most differences between models, and cancels this way).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from recfast.data import load_movielens, strong_generalization_split
from recfast.metrics import evaluate
from recfast.models import EASE, AutoEncoder, Popularity

DATASETS = {"ml-100k": "ml-100k", "ml-latest-small": "ml-latest-small"}
EASE_GRID = (100.0, 200.0, 500.0, 1000.0)
HELDOUT = 0.1
METRICS = ("R@20", "R@50", "NDCG@100")  # the first columns of each row's (seeds, 4) array
BASELINES = {"ease": "EASE", "popularity": "Popularity"}  # --baseline -> label prefix


def _default_data_dir() -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _split(path: Path, seed: int):
    data = load_movielens(path).filter(rating_above=3.5, min_user_interactions=5)
    return strong_generalization_split(data.matrix(), n_heldout_users=HELDOUT, seed=seed)


def _models(quick: bool, threads: int, required: bool = False) -> list[tuple[str, object]]:
    """(label, factory(seed)) for every row of the table."""

    def ae(**kw: object) -> object:
        """A factory(seed) of AutoEncoders with these settings."""
        return lambda seed: AutoEncoder(random_state=seed, verbose=False, num_threads=threads, **kw)

    rows = [("AutoEncoder (default: hybrid)", ae())]
    if not required:
        rows.append(("AutoEncoder dae (Mult-DAE)", ae(variant="dae")))
    if not (quick or required):
        rows.append(("AutoEncoder vae (Mult-VAE)", ae(variant="vae")))
        rows.append(("AutoEncoder ae (MSE)", ae(variant="ae")))
    rows.append(("EASE (lambda on validation)", "ease"))
    rows.append(("Popularity", lambda seed: Popularity()))
    return rows


def _fit_ease(split) -> tuple[EASE, float, float]:
    """EASE with lambda chosen by validation NDCG@100; returns (model, lambda, fit seconds)."""
    best = None
    total = 0.0
    for l2 in EASE_GRID:
        t = time.perf_counter()
        m = EASE(l2).fit(split.train)
        total += time.perf_counter() - t
        v = evaluate(m, split.valid_input, split.valid_target, ks=(100,))["ndcg@100"]
        if best is None or v > best[0]:
            best = (v, m, l2)
    return best[1], best[2], total


def run_dataset(
    name: str, path: Path, seeds: list[int], quick: bool, threads: int, required: bool = False
) -> list[tuple]:
    rows = _models(quick, threads, required)
    results: dict[str, list] = {label: [] for label, _ in rows}
    for seed in seeds:
        split = _split(path, seed)
        for label, make in rows:
            extra = ""
            if make == "ease":
                model, l2, secs = _fit_ease(split)
                extra = f" lambda={l2:g}"
            else:
                model = make(seed)
                t = time.perf_counter()
                if isinstance(model, AutoEncoder):
                    model.fit(split.train, validation=(split.valid_input, split.valid_target))
                    extra = f" best_epoch={model.best_epoch_}"
                else:
                    model.fit(split.train)
                secs = time.perf_counter() - t
            r = evaluate(model, split.test_input, split.test_target, ks=(20, 50, 100))
            results[label].append((r["recall@20"], r["recall@50"], r["ndcg@100"], secs))
            print(
                f"  {name} seed={seed} {label}: NDCG@100={r['ndcg@100']:.4f} "
                f"fit={secs:.1f}s{extra}",
                file=sys.stderr,
                flush=True,
            )
    return [(label, np.array(results[label])) for label, _ in rows]


def _table(name: str, n_seeds: int, shape: str, rows: list[tuple]) -> str:
    out = [
        f"\n{name} ({shape}; {n_seeds} seed{'s' if n_seeds > 1 else ''}, mean +- sd)",
        "| model | R@20 | R@50 | NDCG@100 | fit s |",
        "|---|---|---|---|---|",
    ]
    for label, a in rows:
        mean, sd = a.mean(0), a.std(0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1])
        cells = [f"{mean[i]:.4f} +- {sd[i]:.4f}" for i in range(3)]
        cells.append(f"{mean[3]:.1f} +- {sd[3]:.1f}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def paired_differences(rows: list[tuple], baseline: str) -> list[tuple[str, np.ndarray]]:
    """(label, per-seed differences (seeds, 3): model - baseline of R@20, R@50, NDCG@100) for
    every row but the baseline (the row whose label starts with `baseline`)."""
    base = [a for label, a in rows if label.startswith(baseline)]
    if len(base) != 1:
        raise ValueError(
            f"baseline: expected one row whose label starts with {baseline!r}, "
            f"found {len(base)} among {[label for label, _ in rows]}"
        )
    b = np.asarray(base[0], dtype=np.float64)[:, : len(METRICS)]
    out = []
    for label, a in rows:
        if label.startswith(baseline):
            continue
        a = np.asarray(a, dtype=np.float64)[:, : len(METRICS)]
        if a.shape != b.shape:
            raise ValueError(
                f"{label}: {a.shape[0]} seeds, the baseline has {b.shape[0]}: not paired"
            )
        out.append((label, a - b))
    return out


def _paired_table(name: str, rows: list[tuple], baseline: str) -> str:
    diffs = paired_differences(rows, baseline)
    n_seeds = diffs[0][1].shape[0] if diffs else 0
    out = [
        f"\n{name}: paired by seed, model - {baseline} (mean +- sd over {n_seeds} seed"
        f"{'s' if n_seeds != 1 else ''} [min, max]; seeds ahead on NDCG@100; NDCG@100 per seed)",
        "| model - "
        + baseline
        + " | "
        + " | ".join(f"d {m}" for m in METRICS)
        + " | ahead | d NDCG@100 per seed |",
        "|---|" + "---|" * (len(METRICS) + 2),
    ]
    for label, d in diffs:
        mean = d.mean(axis=0)
        sd = d.std(axis=0, ddof=1) if n_seeds > 1 else np.full(d.shape[1], np.nan)
        cells = [
            f"{mean[i]:+.4f} +- {sd[i]:.4f} [{d[:, i].min():+.4f}, {d[:, i].max():+.4f}]"
            if n_seeds > 1
            else f"{mean[i]:+.4f}"
            for i in range(len(METRICS))
        ]
        ahead = f"{int((d[:, -1] > 0).sum())}/{n_seeds}"
        per_seed = " ".join(f"{v:+.4f}" for v in d[:, -1])
        out.append(f"| {label} | " + " | ".join(cells) + f" | {ahead} | {per_seed} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, fewer variants")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5, quick 1)")
    ap.add_argument("--data", type=Path, default=_default_data_dir(), help="MovieLens folder")
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument(
        "--required", action="store_true", help="only the default AutoEncoder, EASE and Popularity"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    ap.add_argument(
        "--baseline",
        choices=list(BASELINES),
        default="ease",
        help="the row every model is compared with, seed by seed (ease)",
    )
    ap.add_argument(
        "--cold-start",
        action="store_true",
        help="rank held-out cold items from their genres (and tags): the feature encoder vs "
        "content k-NN vs random (see bench/cold_start_quality.py)",
    )
    args = ap.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        ap.error(f"--seeds: expected a positive number, got {args.seeds}")
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads: expected a positive number, got {args.threads}")
    n_seeds = args.seeds or (1 if args.quick else 5)
    threads = args.threads or len(os.sched_getaffinity(0))
    tables = []
    for name in args.datasets:
        path = args.data / DATASETS[name]
        if not path.exists():
            print(f"skipping {name}: {path} not found (MovieLens is not shipped with recfast)")
            continue
        if args.cold_start:
            from cold_start_quality import run as run_cold_start

            tables.append(run_cold_start(path, name, list(range(n_seeds)), threads))
            print(tables[-1], flush=True)
            continue
        split = _split(path, 0)
        n_users = split.train.shape[0] + 2 * split.test_input.shape[0]
        shape = f"{n_users} users x {split.train.shape[1]} items"
        rows = run_dataset(name, path, list(range(n_seeds)), args.quick, threads, args.required)
        tables.append(_table(name, n_seeds, shape, rows))
        tables.append(_paired_table(name, rows, BASELINES[args.baseline]))
        print(tables[-2], tables[-1], sep="\n", flush=True)
    if not tables:
        print("no dataset found; nothing measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
