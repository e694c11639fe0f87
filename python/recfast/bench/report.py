"""The float64 check of each row, tables, plot and README table for `python -m recfast.bench`
(no timing happens here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._io import atomic_write
from . import check as _bench_check

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
SUMMARY = [
    "recfast-dot",
    "recfast-cosine",
    "index-float32",
    "index-float16",
    "index-int8",
    "reference",
    "faiss-default",
    "faiss-best",
    "torch",
    "implicit",
]


def gflops(n: int, d: int, b: int, seconds: float) -> float:
    return 2.0 * b * n * d / seconds / 1e9


# Bytes per stored item value of each row's scan (the rest stream float32).
_VALUE_BYTES = {"index-float16": 2, "index-int8": 1}


def floor_seconds(tag: str, n: int, d: int, b: int, floors: dict | None) -> float | None:
    """The hardware floor of one call: the larger of reading the N x d items once at the
    measured read rate and 2 B N d flops at the machine's measured float32 FMA rate (its widest
    vectors, all threads). int8 rows get the read floor only (their multiplies are integer).
    None without measured floors."""
    if not floors:
        return None
    read = float(floors.get("read_gbs") or 0.0)
    fma = max(float(floors.get("fma256_gflops") or 0.0), float(floors.get("fma512_gflops") or 0.0))
    t_read = n * d * _VALUE_BYTES.get(tag, 4) / (read * 1e9) if read > 0 else 0.0
    t_fma = 2.0 * b * n * d / (fma * 1e9) if fma > 0 and tag != "index-int8" else 0.0
    return max(t_read, t_fma) or None


def floors_text(floors: dict | None) -> str:
    """One line of the measured machine rates the floors come from."""
    if not floors:
        return "floors: not measured"
    return (
        f"floors measured here ({floors['threads']} threads): read {floors['read_gbs']:.1f} GB/s, "
        f"float32 FMA {floors['fma256_gflops']:.0f} GFLOP/s (256-bit), "
        f"{floors['fma512_gflops']:.0f} GFLOP/s (512-bit; 0: none), "
        f"float16 conversion {floors['f16_gfloats']:.1f} G/s; "
        "floor = max(items read once, 2 B N d flops at the best FMA rate)"
    )


def check_row(npz: str, truth: _bench_check.Truth) -> dict[str, Any]:
    """The float64 check (`recfast.bench.check.check_topk`) of one worker's saved answer."""
    with np.load(npz) as f:
        ids, scores, exact = f["ids"], f["scores"], f["exact"]
    b, k = ids.shape if ids.ndim == 2 else (0, 0)
    if not (1 <= k <= truth.k and b <= truth.ids.shape[0]):
        return {
            "rows": int(truth.ids.shape[0]),
            "exact": 0,
            "tie": 0,
            "bad": max(1, b),
            "score_errors": 0,
            "max_place_gap": 0.0,
            "max_score_error": 0.0,
            "problems": [f"shape: ids {ids.shape}, expected (B, k) with k <= {truth.k}"],
        }
    return _bench_check.check_topk(ids, scores, exact, truth.prefix(b, k)).to_dict()


def failed(check: dict | None) -> bool:
    """True when a row's float64 check found a wrong answer."""
    return check is not None and bool(check) and bool(check["bad"])


def check_text(check: dict | None) -> str:
    if not check:
        return "!!! UNCHECKED"
    parts = []
    if check["bad"]:
        parts.append(f"!!! WRONG {check['bad']}/{check['rows']} rows")
        if check["score_errors"]:
            parts.append(f"{check['score_errors']} with wrong scores")
    elif check["tie"]:
        parts.append(f"ok, {check['tie']} near-tie rows")
    else:
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
    cols = (
        f"{'library':<27} {'median ms':>9} {'p99 ms':>8} {'floor ms':>8} {'of floor':>8} "
        f"{'GFLOP/s':>8} {'x recfast':>9} {'extra MB':>9}  {'reps':>4}  check"
    )
    lines.append(cols)
    for tag, label in ROWS:
        r = rows.get(tag)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"{label:<27} {'ERROR':>9}  {r['error'][:80]}")
            continue
        ratio = f"{r['median_s'] / base['median_s']:.2f}x" if base and "median_s" in base else "-"
        note = f" (= {LABELS[r['from']]})" if tag == "faiss-best" else ""
        floor = r.get("floor_s")
        floor_ms = _fmt_ms(floor) if floor else "-"
        share = f"{floor / r['median_s']:.0%}" if floor else "-"
        lines.append(
            f"{label:<27} {_fmt_ms(r['median_s']):>9} {_fmt_ms(r['p99_s']):>8} {floor_ms:>8} "
            f"{share:>8} {r['gflops']:>8.1f} {ratio:>9} "
            f"{r['extra_peak_mb']:>9.1f}  {r['repeats']:>4}  {check_text(r.get('check'))}{note}"
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
    """One line per shape: each library's ms and its time relative to recfast dot ("!": failed or
    unchecked)."""
    present = [t for t in SUMMARY if any(t in table.get(s, {}) for s in shapes)]
    names = {
        "recfast-dot": "recfast dot",
        "recfast-cosine": "recfast cos",
        "reference": "NumPy ref",
        "index-float32": "index fp32",
        "index-float16": "index fp16",
        "index-int8": "index int8",
        "faiss-default": "FAISS dflt",
        "faiss-best": "FAISS best",
        "torch": "torch",
        "implicit": "implicit",
    }
    head = f"{'d':>4} {'B':>5} {'k':>4}  " + " ".join(f"{names[t]:>17}" for t in present)
    lines = [f"Summary, N={n:,}: median ms (time / recfast dot time)", head]
    for s in shapes:
        rows = table.get(s, {})
        base = rows.get(BASELINE, {}).get("median_s")
        cells = []
        for t in present:
            r = rows.get(t)
            if r is None:
                cells.append(f"{'-':>17}")
            elif "error" in r:
                cells.append(f"{'ERROR':>17}")
            else:
                flag = "!" if failed(r.get("check")) or not r.get("check") else ""
                ratio = f"({r['median_s'] / base:.2f}x){flag}" if base else ""
                cells.append(f"{_fmt_ms(r['median_s']) + ' ' + ratio:>17}")
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
                (b, table[(dd, b, kk)][tag]["median_s"] * 1e3)
                for (dd, b, kk) in shapes
                if dd == d and kk == k and "median_s" in table.get((dd, b, kk), {}).get(tag, {})
            )
            if pts:
                xs, ys = zip(*pts)
                style = "-o" if tag.startswith("recfast") else "--s"
                ax.plot(xs, ys, style, label=label, linewidth=2 if tag == BASELINE else 1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("queries per call (B)")
        ax.set_ylabel("ms per call (median of repeats)")
        ax.set_title(f"top-{k}, N={n:,}, d={d}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# the README's table, from a saved run

# (tag, column heading) of the README table, in its order.
README_COLUMNS = [
    ("recfast-dot", "recfast dot"),
    ("recfast-cosine", "recfast cosine"),
    ("index-float32", "ItemIndex fp32"),
    ("index-int8", "ItemIndex int8 (exact)"),
    ("index-float16", "ItemIndex fp16 (exact)"),
    ("reference", "NumPy ref"),
    ("faiss-best", "FAISS best"),
    ("torch", "torch"),
    ("implicit", "implicit"),
]


def _fmt_readme_ms(ms: float) -> str:
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x"


def machine_slug(machine: dict) -> str:
    """'amd-epyc-7b13-2cpu' from a run's `machine` record (for bench/results/<date>-<slug>.json)."""
    model = str(machine.get("cpu_model") or "unknown").lower()
    for noise in ("(r)", "(tm)", "processor", " cpu ", "core(tm)"):
        model = model.replace(noise, " ")
    model = model.split("@")[0]
    words = "".join(ch if ch.isalnum() else " " for ch in model).split()
    return "-".join(
        words[:5] + [f"{machine.get('cpus_available') or machine.get('logical_cpus') or '?'}cpu"]
    )


def markdown_table(data: dict, source: str = "") -> str:
    """The README's benchmark table (ms, and time relative to recfast dot) from a saved run.

    Raises ValueError when the run is not one to quote: a row failed or missed its float64
    check, or a worker or shape failed.
    """
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("results"), list)
        or "config" not in data
    ):
        raise ValueError(
            "not a result file of `python -m recfast.bench` (expected the keys 'config' and 'results')"
        )
    if data.get("schema", 1) < 2:
        raise ValueError(
            f"written before every row was checked against float64 (schema {data.get('schema', 1)}); "
            "rerun `python -m recfast.bench`"
        )
    rows = data["results"]
    wrong = [r for r in rows if "error" not in r and failed(r.get("check"))]
    unchecked = [r for r in rows if "error" not in r and not r.get("check")]
    broken = [r for r in rows if "error" in r]
    problems = []
    for what, bad in (
        ("failed the float64 check", wrong),
        ("have no float64 check", unchecked),
        ("failed to run", broken),
    ):
        if bad:
            problems.append(
                f"{len(bad)} row(s) {what}: "
                + ", ".join(
                    f"{r.get('label', r.get('tag'))} d={r.get('d')} B={r.get('B')} k={r.get('k')}"
                    for r in bad[:6]
                )
            )
    if data.get("errors"):
        problems.append(f"{len(data['errors'])} worker/shape error(s)")
    if problems:
        raise ValueError("not a run to quote: " + "; ".join(problems))
    table: dict[tuple[int, int, int], dict[str, dict]] = {}
    for r in rows:
        table.setdefault((r["d"], r["B"], r["k"]), {})[r["tag"]] = r
    shapes = [tuple(s) for s in data["config"].get("shapes_dBk") or sorted(table)]
    cols = [(t, h) for t, h in README_COLUMNS if any(t in table.get(s, {}) for s in shapes)]
    m = data.get("machine", {})
    when = str(data.get("created", "?"))[:10]
    minutes = (data.get("elapsed_s") or 0) / 60
    argv = " ".join(["python -m recfast.bench", *data.get("argv", [])])
    lines = [
        f"N = {data['config']['n_items']:,}; {m.get('cpu_model', '?')}, {m.get('cpus_available', '?')} CPUs; "
        f"median ms and time relative to recfast dot, all from one run (`{argv}`, {when}, {minutes:.1f} minutes"
        + (f", `{source}`" if source else "")
        + "); every cell passed the float64 check.",
        "",
        "| d | B | k | floor (recfast dot's share) | " + " | ".join(h for _, h in cols) + " |",
        "|" + "---|" * (4 + len(cols)),
    ]
    for s in shapes:
        cells = []
        for tag, _ in cols:
            r = table.get(s, {}).get(tag)
            if r is None:
                cells.append("-")
            elif tag == BASELINE or "ratio_to_recfast" not in r:
                cells.append(_fmt_readme_ms(r["ms"]))
            else:
                cells.append(f"{_fmt_readme_ms(r['ms'])} ({_fmt_ratio(r['ratio_to_recfast'])})")
        base = table.get(s, {}).get(BASELINE, {})
        floor = base.get("floor_s")
        floor_cell = (
            f"{_fmt_readme_ms(floor * 1e3)} ({floor / base['median_s']:.0%})" if floor else "-"
        )
        lines.append(f"| {s[0]} | {s[1]} | {s[2]} | {floor_cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
