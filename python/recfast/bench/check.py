"""The float64 check every benchmark runs on every top-k answer it times.

`exact_topk(queries, items, k)` computes the true top-k by inner product in float64, cheaply
enough for N = 1,000,000 items and a thousand queries: a float32 pass with NumPy in blocks keeps
the best k + margin items of each query (candidates), the candidates are rescored in float64,
and the result is *certified*: every item left out scored at most the candidates' m-th float32
score `cut` in float32, so at most `cut + e` in float64, where e bounds the float32 rounding
error of a d-term dot product (2 * gamma_d * |q| * max|x|, gamma_d = d u / (1 - d u),
u = 2^-24, in any summation order). When `cut + e` is not below the float64 k-th score (massive
ties, duplicated items), that query is redone with four times the margin, up to all N items, so
the answer never depends on the margin.

`check_topk(ids, scores, exact, truth)` then accepts a contestant's (B, k) answer row by row iff

* its ids are distinct and in [0, N), followed by -1 padding only where k > N;
* at every place j its item's float64 score is within `tol` of the true j-th float64 score
  (ids in order; near-ties may come in either order, or swap an item at the k-th place for
  another of (nearly) equal score);
* every item whose float64 score is above the true k-th score + `tol` is in its list (so no
  chain of small substitutions can drop a clearly better item);
* its reported scores are within `tol` of the float64 scores of its ids.

`tol` is relative to the scale of the scores: the absolute tolerance of a query row is
tol * |q| * max|x|, and by default tol = 2 * gamma_d, twice the worst-case float32 rounding error
(about 1.5e-5 at d = 128; the float32 contestant and the ideal ranking may each be off by that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

_U32 = 2.0**-24
# float32 scores per block of the candidate pass (128 MiB), and rows rescored at once in float64
_BLOCK_ELEMENTS = 1 << 25
_RESCORE_ELEMENTS = 1 << 22
DEFAULT_MARGIN = 32
_MAX_PROBLEMS = 5


def gamma(d: int) -> float:
    """gamma_d = d u / (1 - d u), u = 2^-24: |fl32(q.x) - q.x| <= gamma_d * sum |q_i x_i|."""
    du = max(int(d), 1) * _U32
    if du >= 1.0:
        return float("inf")
    return du / (1.0 - du)


def default_tol(d: int) -> float:
    """The default relative tolerance: twice the worst-case float32 error of a d-term product."""
    return 2.0 * gamma(d)


@dataclass(frozen=True)
class Truth:
    """The float64 top-k of each query: ids and scores by score descending (ties by id).

    ids (B, k) int64 with -1 past N, scores (B, k) float64 with -inf past N, tol (B,) the
    absolute tolerance of each query row, n_items N.
    """

    ids: np.ndarray
    scores: np.ndarray
    tol: np.ndarray
    n_items: int
    rounds: int = 1  # candidate passes needed (1 unless ties forced a larger margin)

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])

    def prefix(self, b: int, k: int) -> Truth:
        """The truth of the first b queries at k <= self.k (the top-k is a prefix of the top-K)."""
        if not 0 <= b <= self.ids.shape[0]:
            raise ValueError(f"b: expected 0 <= b <= {self.ids.shape[0]}, got {b}")
        if not 1 <= k <= self.k:
            raise ValueError(f"k: expected 1 <= k <= {self.k} (the depth computed), got {k}")
        return Truth(self.ids[:b, :k], self.scores[:b, :k], self.tol[:b], self.n_items, self.rounds)

    def save(self, path: str) -> None:
        np.savez(
            path,
            ids=self.ids,
            scores=self.scores,
            tol=self.tol,
            n_items=np.int64(self.n_items),
            rounds=np.int64(self.rounds),
        )

    @classmethod
    def load(cls, path: str) -> Truth:
        with np.load(path) as f:
            return cls(f["ids"], f["scores"], f["tol"], int(f["n_items"]), int(f["rounds"]))


def _as_2d(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a) if not isinstance(a, np.ndarray) else a
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {arr.shape}")
    return arr


def _max_norm(items: np.ndarray) -> float:
    rows = max(1, _BLOCK_ELEMENTS // max(items.shape[1], 1))
    best = 0.0
    for s in range(0, items.shape[0], rows):
        x = np.asarray(items[s : s + rows], dtype=np.float64)
        best = max(best, float(np.sqrt(np.einsum("ij,ij->i", x, x).max(initial=0.0))))
    return best


def rescore(queries: np.ndarray, items: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """float64 inner products of each query with its ids ((B, k)); -inf where an id is not in [0, N)."""
    q = np.asarray(queries, dtype=np.float64)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 2 or ids.shape[0] != q.shape[0]:
        raise ValueError(f"ids: expected shape ({q.shape[0]}, k), got {ids.shape}")
    out = np.full(ids.shape, -np.inf)
    step = max(1, _RESCORE_ELEMENTS // max(1, ids.shape[1] * max(q.shape[1], 1)))
    n = items.shape[0]
    for s in range(0, ids.shape[0], step):
        idx = ids[s : s + step]
        valid = (idx >= 0) & (idx < n)
        vecs = np.asarray(items[np.where(valid, idx, 0)], dtype=np.float64)
        out[s : s + step] = np.where(valid, np.einsum("bkd,bd->bk", vecs, q[s : s + step]), -np.inf)
    return out


def _candidates(q: np.ndarray, items: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (r, m) of the m best float32 scores per query, the m-th best float32 score (r,)).

    Items in blocks; once m are held, only the scores above a query's current m-th best (few,
    in random data) join the selection."""
    r, n = q.shape[0], items.shape[0]
    best_s = np.full((r, 0), -np.inf, np.float32)
    best_i = np.zeros((r, 0), np.int64)
    nb = max(1, _BLOCK_ELEMENTS // max(r, 1))
    for s in range(0, n, nb):
        x = np.asarray(items[s : s + nb], dtype=np.float32)
        block = q @ x.T
        if best_s.shape[1] == m:
            hit_r, hit_c = np.nonzero(block > best_s.min(axis=1)[:, None])
            if hit_r.size == 0:
                continue
            counts = np.bincount(hit_r, minlength=r)
            col = np.arange(hit_r.size) - np.repeat(np.cumsum(counts) - counts, counts)
            new_s = np.full((r, int(counts.max())), -np.inf, np.float32)
            new_i = np.zeros(new_s.shape, np.int64)
            new_s[hit_r, col] = block[hit_r, hit_c]
            new_i[hit_r, col] = hit_c + s
        else:
            new_s, new_i = block, np.broadcast_to(np.arange(s, s + x.shape[0]), block.shape)
        cat_s = np.concatenate([best_s, new_s], axis=1)
        cat_i = np.concatenate([best_i, new_i], axis=1)
        if cat_s.shape[1] > m:
            part = np.argpartition(-cat_s, m - 1, axis=1)[:, :m]
            cat_s = np.take_along_axis(cat_s, part, axis=1)
            cat_i = np.take_along_axis(cat_i, part, axis=1)
        best_s, best_i = cat_s, np.ascontiguousarray(cat_i)
    return best_i, best_s.min(axis=1).astype(np.float64)


def exact_topk(
    queries: Any, items: Any, k: int, *, tol: float | None = None, margin: int = DEFAULT_MARGIN
) -> Truth:
    """The float64 top-k of each query over the items (see the module docstring).

    queries (B, d) and items (N, d) are converted to float32 for the candidate pass (items in
    blocks, so a memory map stays a memory map); tol is relative (default `default_tol(d)`).
    """
    q = np.ascontiguousarray(_as_2d("queries", queries), dtype=np.float32)
    x = _as_2d("items", items)
    if x.shape[1] != q.shape[1]:
        raise ValueError(
            f"items: expected {q.shape[1]} columns (the queries' dimension), got {x.shape[1]}"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, np.integer)) or margin < 0:
        raise ValueError(f"margin: expected an integer >= 0, got {margin!r}")
    k = int(k)
    b, d = q.shape
    n = x.shape[0]
    rel = default_tol(d) if tol is None else float(tol)
    if not rel >= 0:
        raise ValueError(f"tol: expected a number >= 0, got {tol!r}")
    q64 = q.astype(np.float64)
    scale = np.sqrt(np.einsum("ij,ij->i", q64, q64)) * (_max_norm(x) if n else 0.0)
    out_ids = np.full((b, k), -1, np.int64)
    out_s = np.full((b, k), -np.inf)
    depth = min(k, n)
    rounds = 0
    if depth and b:
        err = 2.0 * gamma(d) * scale * (1 + 1e-6)  # bound on |float32 - float64| of one score
        rows = np.arange(b)
        m = min(n, depth + int(margin))
        while rows.size:
            rounds += 1
            cand, cut = _candidates(q[rows], x, m)
            s64 = rescore(q64[rows], x, cand)
            order = np.lexsort((cand, -s64), axis=1)[:, :depth]
            top_i = np.take_along_axis(cand, order, axis=1)
            top_s = np.take_along_axis(s64, order, axis=1)
            done = np.full(rows.size, m >= n) | (cut + err[rows] <= top_s[:, -1])
            out_ids[rows[done], :depth] = top_i[done]
            out_s[rows[done], :depth] = top_s[done]
            rows = rows[~done]
            m = min(n, 4 * m)
    return Truth(out_ids, out_s, rel * scale, n, max(rounds, 1))


@dataclass
class CheckResult:
    """How a (B, k) answer compares with the float64 truth (see `check_topk`)."""

    rows: int
    exact: int = 0  # rows whose ids equal the float64 order exactly
    tie: int = 0  # accepted rows that differ from it only at near-ties
    bad: int = 0  # rows that fail any rule (wrong item, order, padding, or score)
    score_errors: int = 0  # of those, rows with a reported score off its float64 score
    max_place_gap: float = 0.0  # largest |float64 score at place j - true j-th score| / tolerance
    max_score_error: float = 0.0  # largest |reported - float64 score| (valid places)
    problems: list[str] = field(default_factory=list)  # the first few failing rows, explained

    @property
    def ok(self) -> bool:
        return self.bad == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "exact": self.exact,
            "tie": self.tie,
            "bad": self.bad,
            "score_errors": self.score_errors,
            "max_place_gap": self.max_place_gap,
            "max_score_error": self.max_score_error,
            "problems": list(self.problems),
        }


def check_topk(ids: Any, scores: Any, exact: Any, truth: Truth) -> CheckResult:
    """Check a contestant's answer for the queries of `truth` (its B rows, its k places).

    ids, scores: what the contestant returned, (B, k); exact: the float64 scores of those ids
    (`rescore`). Returns the counts and the first few problems, never raises on a wrong answer.
    """
    ids = np.asarray(ids)
    want = truth.ids.shape
    b, k, n = want[0], want[1], truth.n_items
    res = CheckResult(rows=b)
    if ids.shape != want or np.shape(scores) != want or np.shape(exact) != want:
        res.bad = b
        res.problems.append(
            f"shape: ids {ids.shape}, scores {np.shape(scores)}, float64 scores "
            f"{np.shape(exact)}; expected {want}"
        )
        return res
    if b == 0:
        return res
    if not np.issubdtype(ids.dtype, np.integer):
        res.bad = b
        res.problems.append(f"ids: expected integers, got dtype {ids.dtype}")
        return res
    ids = ids.astype(np.int64)
    reported = np.asarray(scores, dtype=np.float64)
    c = np.asarray(exact, dtype=np.float64)
    t, tol = truth.scores, truth.tol[:, None]
    nv = min(k, n)  # places that must hold items; the rest must be padding (-1)

    vi, vc, vt, vr = ids[:, :nv], c[:, :nv], t[:, :nv], reported[:, :nv]
    bad_id = ((vi < 0) | (vi >= n)).any(axis=1)
    bad_pad = (ids[:, nv:] != -1).any(axis=1)
    srt = np.sort(vi, axis=1)
    dup = (srt[:, 1:] == srt[:, :-1]).any(axis=1) if nv > 1 else np.zeros(b, bool)
    with np.errstate(invalid="ignore"):
        gap = np.abs(vc - vt)
        place_bad = ~(gap <= tol)  # NaN fails
        serr = np.abs(vr - vc)
        score_bad = ~(serr <= tol)
    place_bad_row = place_bad.any(axis=1)
    # Every true item clearly above the k-th score (score > t_k + tol) must be returned.
    missing = np.zeros((b, nv), bool)
    if nv:
        need = vt > (vt[:, -1:] + tol)
        off = (np.arange(b, dtype=np.int64) * (n + 2))[:, None]
        flat = np.sort((np.clip(vi, -1, n) + 1 + off).ravel())
        probe = truth.ids[:, :nv] + 1 + off
        pos = np.searchsorted(flat, probe.ravel()).clip(max=flat.size - 1).reshape(probe.shape)
        missing = need & (flat[pos] != probe)
    missing_row = missing.any(axis=1)
    score_row = score_bad.any(axis=1)
    bad = bad_id | bad_pad | dup | place_bad_row | missing_row | score_row
    exact_rows = ~bad & (ids == truth.ids).all(axis=1)
    res.exact = int(exact_rows.sum())
    res.bad = int(bad.sum())
    res.tie = b - res.exact - res.bad
    res.score_errors = int((score_row & ~(bad_id | bad_pad | dup)).sum())
    finite = np.isfinite(gap) & (tol > 0)
    res.max_place_gap = float((gap / np.where(tol > 0, tol, 1.0))[finite].max(initial=0.0))
    fin = np.isfinite(serr)
    res.max_score_error = float(serr[fin].max(initial=0.0)) if fin.any() else 0.0
    if (~fin & (vi >= 0)).any():
        res.max_score_error = float("inf")

    for r in np.flatnonzero(bad)[:_MAX_PROBLEMS]:
        res.problems.append(
            f"query row {r}: "
            + _explain(
                r, ids, reported, c, truth, nv, bad_id, bad_pad, dup, place_bad, missing, score_bad
            )
        )
    if res.bad > _MAX_PROBLEMS:
        res.problems.append(f"... and {res.bad - _MAX_PROBLEMS} more query row(s)")
    return res


def _explain(
    r: int,
    ids: np.ndarray,
    reported: np.ndarray,
    c: np.ndarray,
    truth: Truth,
    nv: int,
    bad_id: np.ndarray,
    bad_pad: np.ndarray,
    dup: np.ndarray,
    place_bad: np.ndarray,
    missing: np.ndarray,
    score_bad: np.ndarray,
) -> str:
    n, tol = truth.n_items, float(truth.tol[r])
    if bad_id[r]:
        j = int(np.flatnonzero((ids[r, :nv] < 0) | (ids[r, :nv] >= n))[0])
        return f"place {j}: id {ids[r, j]} is not in [0, {n})" + (
            " (padding before the end)" if ids[r, j] == -1 else ""
        )
    if bad_pad[r]:
        j = nv + int(np.flatnonzero(ids[r, nv:] != -1)[0])
        return f"place {j}: expected padding id -1 (only {n} items), got {ids[r, j]}"
    if dup[r]:
        vals, counts = np.unique(ids[r, :nv], return_counts=True)
        return f"id {int(vals[counts > 1][0])} returned more than once"
    if missing[r].any():
        j = int(np.flatnonzero(missing[r])[0])
        return (
            f"id {truth.ids[r, j]} (float64 score {truth.scores[r, j]:.9g}, place {j} of the float64 top-k, "
            f"above the k-th best {truth.scores[r, nv - 1]:.9g} by more than the tolerance {tol:.3g}) "
            "is missing"
        )
    if place_bad[r].any():
        j = int(np.flatnonzero(place_bad[r])[0])
        return (
            f"place {j}: id {ids[r, j]} has float64 score {c[r, j]:.9g}, the float64 place-{j} score is "
            f"{truth.scores[r, j]:.9g} (id {truth.ids[r, j]}): off by {abs(c[r, j] - truth.scores[r, j]):.3g}, "
            f"tolerance {tol:.3g} (wrong item or wrong order)"
        )
    j = int(np.flatnonzero(score_bad[r])[0])
    return (
        f"place {j}: reported score {reported[r, j]:.9g} for id {ids[r, j]}, its float64 score is "
        f"{c[r, j]:.9g} (off by {abs(reported[r, j] - c[r, j]):.3g}, tolerance {tol:.3g})"
    )


def verify(queries: Any, items: Any, ids: Any, scores: Any, truth: Truth) -> CheckResult:
    """`check_topk` after rescoring the ids in float64 (for benchmarks that hold the data)."""
    ids = np.asarray(ids)
    if (
        ids.ndim != 2
        or ids.shape[0] != np.shape(queries)[0]
        or not np.issubdtype(ids.dtype, np.integer)
    ):
        return check_topk(ids, scores, np.zeros(ids.shape), truth)
    return check_topk(ids, scores, rescore(np.asarray(queries), _as_2d("items", items), ids), truth)
