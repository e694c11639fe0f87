"""Cross-check, tables and plot for `python -m recfast.bench` (no timing happens here)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

# (tag, label) in table order. "faiss-best" is derived: the fastest FAISS row of that shape
# (default, blas_threshold=1 + database_bs=4096, or 2 single-thread shards at B=1).
ROWS = [
    ("recfast-dot", "recfast dot"),
    ("recfast-cosine", "recfast cosine"),
    ("index-float32", "ItemIndex float32"),
    ("index-float16", "ItemIndex float16 exact"),
    ("index-int8", "ItemIndex int8 exact"),
    ("reference", "NumPy reference"),
    ("faiss-default", "FAISS default"),
    ("faiss-blas", "FAISS blas_threshold=1"),
    ("faiss-shards", "FAISS 2 shards x 1 thread"),
    ("faiss-best", "FAISS best"),
    ("torch", "torch"),
    ("implicit", "implicit"),
]
LABELS = dict(ROWS)
BASELINE = "recfast-dot"
# Columns of the summary table (one per library, best FAISS only).
SUMMARY = ["recfast-dot", "recfast-cosine", "index-float32", "index-float16", "index-int8", "reference", "faiss-default", "faiss-best", "torch", "implicit"]


def gflops(n: int, d: int, b: int, seconds: float) -> float:
    return 2.0 * b * n * d / seconds / 1e9


def compare(base_npz: str, peer_npz: str, tol: float) -> dict[str, Any]:
    """Rows where the peer's id set differs from the baseline's, split into near-ties and real.

    A row is "same" when both return the same set of ids; a "tie" when the sets differ but the
    exact (float64) scores of the two sets, sorted, agree within `tol` at every place (the two
    picked different items of (nearly) equal score at the k-th place); otherwise a "mismatch".
    "score_errors" counts rows where the peer's reported scores differ from the exact scores of
    its own ids by more than `tol` (a wrong score with right ids is an error too).
    """
    with np.load(base_npz) as a, np.load(peer_npz) as p:
        b_ids, b_exact = a["ids"], a["exact"]
        p_ids, p_exact, p_scores = p["ids"], p["exact"], p["scores"]
    if b_ids.shape != p_ids.shape:
        return {"rows": int(b_ids.shape[0]), "same": 0, "tie": 0, "mismatch": int(b_ids.shape[0]),
                "score_errors": 0, "note": f"shape {p_ids.shape} != {b_ids.shape}"}
    same = (np.sort(b_ids, axis=1) == np.sort(p_ids, axis=1)).all(axis=1)
    finite = -1e30  # -inf (padding) compares equal to -inf
    bs = np.sort(np.where(np.isfinite(b_exact), b_exact, finite), axis=1)
    ps = np.sort(np.where(np.isfinite(p_exact), p_exact, finite), axis=1)
    gap = np.abs(bs - ps).max(axis=1) if bs.size else np.zeros(bs.shape[0])
    tie = ~same & (gap <= tol)
    valid = p_ids >= 0
    err = np.where(valid, np.abs(p_scores.astype(np.float64) - p_exact), 0.0)
    err = np.where(np.isnan(err), np.inf, err)
    score_err = (err > tol).any(axis=1) if err.size else np.zeros(err.shape[0], bool)
    return {
        "rows": int(same.shape[0]),
        "same": int(same.sum()),
        "tie": int(tie.sum()),
        "mismatch": int((~same & ~tie).sum()),
        "score_errors": int(score_err.sum()),
        "max_exact_gap": float(gap.max()) if gap.size else 0.0,
        "max_score_error": float(err.max()) if err.size else 0.0,
    }


def check_text(check: dict | None, is_base: bool) -> str:
    if is_base:
        return "baseline"
    if not check:
        return "-"
    parts = []
    if check["mismatch"]:
        parts.append(f"!!! MISMATCH {check['mismatch']}/{check['rows']} rows")
    if check["score_errors"]:
        parts.append(f"!!! WRONG SCORES {check['score_errors']}/{check['rows']} rows")
    if check["tie"]:
        parts.append(f"ok, {check['tie']} near-tie rows")
    if not parts:
        parts.append("ok")
    return "; ".join(parts)


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def shape_table(n: int, d: int, b: int, k: int, rows: dict[str, dict]) -> str:
    """Text table of one shape; rows maps tag -> result row (see bench._collect)."""
    base = rows.get(BASELINE)
    head = f"N={n:,} d={d} B={b} k={k}"
    lines = [head, "-" * len(head)]
    cols = f"{'library':<27} {'ms':>9} {'GFLOP/s':>8} {'x recfast':>9} {'extra MB':>9}  {'reps':>4}  check"
    lines.append(cols)
    for tag, label in ROWS:
        r = rows.get(tag)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"{label:<27} {'ERROR':>9}  {r['error'][:80]}")
            continue
        ratio = f"{r['best_s'] / base['best_s']:.2f}x" if base and "best_s" in base else "-"
        note = f" (= {LABELS[r['from']]})" if tag == "faiss-best" else ""
        lines.append(
            f"{label:<27} {_fmt_ms(r['best_s']):>9} {r['gflops']:>8.1f} {ratio:>9} "
            f"{r['extra_peak_mb']:>9.1f}  {r['repeats']:>4}  {check_text(r.get('check'), tag == BASELINE)}{note}"
        )
    return "\n".join(lines)


def index_candidates(results: list[dict]) -> str:
    """ItemIndex rows: candidates re-scored in float32 per query, per storage and shape."""
    lines = []
    for r in results:
        cand = r.get("info", {}).get("candidates_per_query")
        if r.get("library") == "index" and cand:
            cells = ", ".join(f"B={key.replace('x', ' k=')}: {v:.1f}" for key, v in cand.items())
            lines.append(f"  {LABELS[r['tag']]:<24} d={r['d']}: {cells}")
    if not lines:
        return ""
    return "ItemIndex candidates re-scored per query:\n" + "\n".join(lines)


def summary_table(n: int, shapes: list[tuple[int, int, int]], table: dict) -> str:
    """One line per shape: each library's ms and its time relative to recfast dot."""
    present = [t for t in SUMMARY if any(t in table.get(s, {}) for s in shapes)]
    names = {"recfast-dot": "recfast dot", "recfast-cosine": "recfast cos", "reference": "NumPy ref",
             "index-float32": "index fp32", "index-float16": "index fp16", "index-int8": "index int8",
             "faiss-default": "FAISS dflt", "faiss-best": "FAISS best", "torch": "torch", "implicit": "implicit"}
    head = f"{'d':>4} {'B':>5} {'k':>4}  " + " ".join(f"{names[t]:>17}" for t in present)
    lines = [f"Summary, N={n:,}: ms (time / recfast dot time)", head]
    for s in shapes:
        rows = table.get(s, {})
        base = rows.get(BASELINE, {}).get("best_s")
        cells = []
        for t in present:
            r = rows.get(t)
            if r is None:
                cells.append(f"{'-':>17}")
            elif "error" in r:
                cells.append(f"{'ERROR':>17}")
            else:
                flag = "!" if r.get("check") and (r["check"]["mismatch"] or r["check"]["score_errors"]) else ""
                ratio = f"({r['best_s'] / base:.2f}x){flag}" if base else ""
                cells.append(f"{_fmt_ms(r['best_s']) + ' ' + ratio:>17}")
        d, b, k = s
        lines.append(f"{d:>4} {b:>5} {k:>4}  " + " ".join(cells))
    return "\n".join(lines)


def plot(path: str, n: int, shapes: list[tuple[int, int, int]], table: dict) -> str | None:
    """Time vs B per library (log-log), one panel per (d, k); None if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = sorted({(d, k) for d, _, k in shapes}, key=lambda g: (-g[0], g[1]))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2), squeeze=False)
    for ax, (d, k) in zip(axes[0], groups):
        for tag, label in ROWS:
            if tag in ("faiss-blas", "faiss-shards"):
                continue  # shown through "FAISS best"
            pts = sorted(
                (b, table[(dd, b, kk)][tag]["best_s"] * 1e3)
                for (dd, b, kk) in shapes
                if dd == d and kk == k and "best_s" in table.get((dd, b, kk), {}).get(tag, {})
            )
            if pts:
                xs, ys = zip(*pts)
                style = "-o" if tag.startswith("recfast") else "--s"
                ax.plot(xs, ys, style, label=label, linewidth=2 if tag == BASELINE else 1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("queries per call (B)")
        ax.set_ylabel("ms per call (best of repeats)")
        ax.set_title(f"top-{k}, N={n:,}, d={d}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".topk-", suffix=".png", dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
