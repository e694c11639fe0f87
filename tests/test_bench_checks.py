"""The benchmarks' float64 check (recfast.bench.check) and how the benchmarks use it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import recfast
from recfast import bench
from recfast.bench import check as bc
from recfast.bench import worker as _bench_worker

REPO = Path(__file__).resolve().parents[1]


def _data(n: int = 3000, d: int = 16, b: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((b, d)).astype(np.float32),
        rng.standard_normal((n, d)).astype(np.float32),
    )


def _brute(q: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = q.astype(np.float64) @ x.astype(np.float64).T
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


def _answer(q: np.ndarray, x: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 scores as a float32 contestant would report them, float64 scores)."""
    exact = bc.rescore(q, x, ids)
    return ids, exact.astype(np.float32), exact


# --------------------------------------------------------------------------------------------
# the float64 answer


@pytest.mark.parametrize("margin", [0, 1, 32])
def test_exact_topk_equals_brute_force_float64(margin: int) -> None:
    q, x = _data()
    truth = bc.exact_topk(q, x, 10, margin=margin)
    ids, scores = _brute(q, x, 10)
    np.testing.assert_array_equal(truth.ids, ids)
    np.testing.assert_allclose(truth.scores, scores, rtol=1e-13, atol=0)


def test_exact_topk_widens_the_candidates_when_ties_leave_it_uncertified() -> None:
    q, x = _data(n=40)
    items = np.repeat(x, 50, axis=0)  # every score 50 times: the k-th place is a 50-way tie
    truth = bc.exact_topk(q, items, 10, margin=0)
    assert truth.rounds > 1
    _, scores = _brute(q, items, 10)
    np.testing.assert_allclose(truth.scores, scores, rtol=1e-13, atol=0)


def test_exact_topk_pads_when_k_exceeds_n() -> None:
    q, x = _data(n=5)
    truth = bc.exact_topk(q, x, 8)
    ids, scores = _brute(q, x, 5)
    np.testing.assert_array_equal(truth.ids[:, :5], ids)
    assert (truth.ids[:, 5:] == -1).all() and np.isneginf(truth.scores[:, 5:]).all()


def test_exact_topk_rejects_bad_arguments() -> None:
    q, x = _data()
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        bc.exact_topk(q, x, 0)
    with pytest.raises(ValueError, match="items: expected 16 columns"):
        bc.exact_topk(q, x[:, :8], 3)
    with pytest.raises(ValueError, match="queries: expected a 2-D array"):
        bc.exact_topk(q[0], x, 3)
    with pytest.raises(ValueError, match="margin"):
        bc.exact_topk(q, x, 3, margin=-1)


def test_truth_roundtrip_and_prefix(tmp_path: Path) -> None:
    q, x = _data()
    truth = bc.exact_topk(q, x, 10)
    truth.save(str(tmp_path / "t.npz"))
    back = bc.Truth.load(str(tmp_path / "t.npz"))
    np.testing.assert_array_equal(back.ids, truth.ids)
    p = back.prefix(2, 4)
    np.testing.assert_array_equal(p.ids, truth.ids[:2, :4])
    with pytest.raises(ValueError, match="k: expected 1 <= k <= 10"):
        back.prefix(2, 11)


# --------------------------------------------------------------------------------------------
# the check


def test_accepts_a_correct_topk() -> None:
    q, x = _data()
    truth = bc.exact_topk(q, x, 10)
    got = recfast.topk(q, x, 10, metric="dot")
    res = bc.verify(q, x, got.ids, got.scores, truth)
    assert res.ok and res.exact == res.rows == 6, res.problems


def test_accepts_swapped_near_ties() -> None:
    q, x = _data()
    truth = bc.exact_topk(q, x, 10)
    # Two items whose float64 scores differ by far less than float32 rounding: a copy of the
    # row-0 winner nudged by 1 ulp-ish. Either order at places 0/1 must pass.
    twin = x[truth.ids[0, 0]] * np.float32(1 + 2e-7)
    x2 = np.vstack([x, twin[None]])
    t2 = bc.exact_topk(q, x2, 10)
    assert set(t2.ids[0, :2]) == {truth.ids[0, 0], len(x)}
    ids = t2.ids.copy()
    ids[0, [0, 1]] = ids[0, [1, 0]]
    res = bc.check_topk(*_answer(q, x2, ids), t2)
    assert res.ok, res.problems
    assert res.tie == 1 and res.exact == 5
    # ... and at the k-th place, the near-tie twin may stand in for the true k-th item.
    kth = t2.ids[1, 9]
    x3 = np.vstack([x, x[kth][None] * np.float32(1 - 2e-7)])
    t3 = bc.exact_topk(q, x3, 10)
    ids = t3.ids.copy()
    ids[1, 9] = len(x) if t3.ids[1, 9] == kth else kth
    res = bc.check_topk(*_answer(q, x3, ids), t3)
    assert res.ok and res.tie == 1, res.problems


def test_rejects_a_missing_true_item() -> None:
    q, x = _data()
    truth = bc.exact_topk(q, x, 11)
    t10 = truth.prefix(6, 10)
    ids = truth.ids[:, :10].copy()
    ids[2] = truth.ids[2, 1:11]  # drops the best item, adds the 11th
    res = bc.check_topk(*_answer(q, x, ids), t10)
    assert not res.ok and res.bad == 1
    assert res.problems[0].startswith("query row 2: ")


def test_rejects_a_chain_of_small_substitutions() -> None:
    # Each place within the tolerance of the true one, but the clear winner (10 > 8.2 + 1) is
    # dropped: rule "everything above the k-th score + tolerance is returned" catches it.
    x = np.array([[10.0], [9.1], [8.2], [7.3], [0.0]], np.float32)
    q = np.ones((1, 1), np.float32)
    truth = bc.exact_topk(q, x, 3, tol=0.1)  # absolute tolerance 0.1 * |q| * max|x| = 1.0
    assert truth.tol[0] == pytest.approx(1.0)
    res = bc.check_topk(*_answer(q, x, np.array([[1, 2, 3]])), truth)
    assert not res.ok and "id 0" in res.problems[0] and "is missing" in res.problems[0]
    res = bc.check_topk(*_answer(q, x, np.array([[0, 1, 3]])), truth)  # 7.3 for 8.2: within 1.0
    assert res.ok, res.problems


def test_rejects_a_wrong_order() -> None:
    q, x = _data()
    truth = bc.exact_topk(q, x, 10)
    ids = truth.ids.copy()
    ids[4, [0, 3]] = ids[4, [3, 0]]
    res = bc.check_topk(*_answer(q, x, ids), truth)
    assert res.bad == 1 and "query row 4: place 0" in res.problems[0] and "order" in res.problems[0]


def test_rejects_a_wrong_score() -> None:
    q, x = _data()
    truth = bc.exact_topk(q, x, 10)
    ids, scores, exact = _answer(q, x, truth.ids)
    scores[3, 5] += 1e-3
    res = bc.check_topk(ids, scores, exact, truth)
    assert res.bad == 1 and res.score_errors == 1
    assert "query row 3: place 5: reported score" in res.problems[0]
    scores[3, 5] = np.nan
    assert bc.check_topk(ids, scores, exact, truth).bad == 1


def test_handles_padding_when_k_exceeds_n() -> None:
    q, x = _data(n=5)
    truth = bc.exact_topk(q, x, 8)
    got = recfast.topk(q, x, 8, metric="dot")
    assert (got.ids[:, 5:] == -1).all()
    assert bc.verify(q, x, got.ids, got.scores, truth).ok
    ids = truth.ids.copy()
    ids[0, 6] = ids[0, 0]  # an item where the padding belongs
    res = bc.check_topk(*_answer(q, x, ids), truth)
    assert res.bad == 1 and "expected padding id -1" in res.problems[0]
    ids = truth.ids.copy()
    ids[1, 4] = -1  # padding before all 5 items were returned
    res = bc.check_topk(*_answer(q, x, ids), truth)
    assert res.bad == 1 and "place 4: id -1 is not in [0, 5)" in res.problems[0]


def test_rejects_duplicates_bad_ids_and_bad_shapes() -> None:
    q, x = _data()
    truth = bc.exact_topk(q, x, 10)
    ids = truth.ids.copy()
    ids[0, 1] = ids[0, 0]
    assert "returned more than once" in bc.check_topk(*_answer(q, x, ids), truth).problems[0]
    ids = truth.ids.copy()
    ids[5, 2] = len(x)
    assert "is not in [0, 3000)" in bc.check_topk(*_answer(q, x, ids), truth).problems[0]
    res = bc.verify(q, x, truth.ids[:, :9], np.zeros((6, 9)), truth)
    assert res.bad == 6 and res.problems[0].startswith("shape")


# --------------------------------------------------------------------------------------------
# python -m recfast.bench: every row checked, a wrong one fails the run


def _in_process_workers(monkeypatch: pytest.MonkeyPatch, corrupt: str | None = None) -> None:
    """Run the benchmark's workers in this process; `corrupt` names a tag whose answer is spoiled."""

    def fake(spec: dict, env: dict, timeout: float) -> dict:
        res = _bench_worker.run(spec)
        if spec["tag"] == corrupt:
            for s in res["shapes"]:
                with np.load(s["npz"]) as f:
                    ids, scores, exact = f["ids"], f["scores"], f["exact"]
                ids[0, [0, -1]] = ids[0, [-1, 0]]  # best and k-th swapped in query row 0
                scores[0, [0, -1]] = scores[0, [-1, 0]]
                exact[0, [0, -1]] = exact[0, [-1, 0]]
                np.savez(s["npz"], ids=ids, scores=scores, exact=exact)
        return res

    monkeypatch.setattr(bench.runner, "_run_worker", fake)


ARGS = [
    "--n-items",
    "2000",
    "--dims",
    "16",
    "--batches",
    "1,4",
    "--ks",
    "5",
    "--peers",
    "none",
    "--repeats",
    "1",
    "--no-plot",
]


def test_bench_fails_naming_the_row_and_the_contestant(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _in_process_workers(monkeypatch, corrupt="recfast-dot")  # the baseline itself is checked
    assert bench.main([*ARGS, "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "!!! recfast dot at d=16 B=1 k=5: 1/1 query rows wrong" in out
    assert "!!! recfast dot at d=16 B=4 k=5: 1/4 query rows wrong" in out
    assert "query row 0: place 0" in out
    assert "recfast cosine at" not in out
    data = json.loads((tmp_path / "topk.json").read_text())
    assert data["mismatches"] == 2
    with pytest.raises(
        ValueError, match="2 row\\(s\\) failed the float64 check: recfast dot d=16 B=1 k=5"
    ):
        bench.report.markdown_table(data)


def test_bench_saves_json_for_the_readme_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _in_process_workers(monkeypatch)
    results = tmp_path / "results"
    assert bench.main([*ARGS, "--out", str(tmp_path / "out"), "--save-json", f"{results}/"]) == 0
    (saved,) = results.iterdir()
    assert saved.name.endswith("cpu.json") and saved.name[:4].isdigit()
    data = json.loads(saved.read_text())
    assert data == json.loads((tmp_path / "out" / "topk.json").read_text())
    rows = data["results"]
    assert {r["tag"] for r in rows} == {"recfast-dot", "recfast-cosine"}
    assert all(r["check"]["bad"] == 0 and r["check"]["rows"] == r["B"] for r in rows)
    # Every row has its measured floor, and short calls were timed 30 times for the median/p99.
    floors = data["machine"]["floors"]
    assert floors["read_gbs"] > 0 and floors["fma256_gflops"] + floors["fma512_gflops"] > 0
    for r in rows:
        assert r["floor_s"] >= 16 * 2000 * 4 / (floors["read_gbs"] * 1e9)
        assert r["repeats"] >= 30 or sum(r["times_ms"]) >= 1000
        assert r["best_s"] <= r["median_s"] <= r["p99_s"]
    capsys.readouterr()
    assert bench.main(["--markdown", str(saved)]) == 0
    table = capsys.readouterr().out
    assert "| d | B | k | floor (recfast dot's share) | recfast dot | recfast cosine |" in table
    assert "| 16 | 4 | 5 | " in table and "every cell passed the float64 check" in table


def test_bench_rejects_bad_save_json_and_markdown_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main([*ARGS, "--save-json", str(tmp_path / "missing" / "run.json")]) == 2
    assert "the folder" in capsys.readouterr().err
    assert bench.main(["--markdown", str(tmp_path / "none.json")]) == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert bench.main(["--markdown", str(tmp_path / "bad.json")]) == 2
    assert "not JSON (line 1" in capsys.readouterr().err
    (tmp_path / "old.json").write_text(json.dumps({"schema": 1, "config": {}, "results": []}))
    assert bench.main(["--markdown", str(tmp_path / "old.json")]) == 1
    assert "schema 1" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# bench/ scripts


def _load(name: str) -> ModuleType:
    path = REPO / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_script_{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_index_bench_checks_every_row_against_float64(tmp_path: Path) -> None:
    index_bench = _load("index_bench")
    rows = index_bench.run(n=3000, d=16, k=5, batches=(1, 8), repeats=1, tmpdir=str(tmp_path))
    assert len(rows) == 6
    assert all(r["check"]["bad"] == 0 and r["check"]["rows"] == r["B"] for r in rows), rows


def test_gpu_bench_checks_every_contestant_and_fails_on_a_wrong_one() -> None:
    torch = pytest.importorskip("torch")
    gpu_bench = _load("gpu_bench")  # importable without a GPU; its check runs on the host
    q, x = _data(n=2000, b=12)
    check = gpu_bench.Float64Check(torch.from_numpy(q), torch.from_numpy(x), 8, 20)
    good = recfast.topk(q, x, 5, metric="dot")
    ok = check(torch.from_numpy(good.scores), torch.from_numpy(good.ids), 12, 5)
    assert ok["rows"] == 8 and ok["bad"] == 0
    bad_ids = good.ids.copy()
    bad_ids[3] = bad_ids[3, ::-1]
    wrong = check(good.scores, bad_ids, 12, 5)
    assert wrong["bad"] == 1
    result = {
        "shapes": [
            {"B": 12, "k": 5, "check": {"recfast": ok, "torch": ok, "faiss_gpu": wrong}},
            {"B": 1, "k": 10, "error": "RuntimeError('out of memory')"},
            {
                "B": 4,
                "k": 5,
                "faiss_gpu_error": "k too large",
                "check": {"recfast": ok, "torch": ok},
            },
        ]
    }
    wrong_lines, broken = gpu_bench.failures(result)
    assert len(wrong_lines) == 1 and wrong_lines[0].startswith(
        "B=12 k=5: faiss_gpu: 1/8 checked query rows wrong"
    )
    assert broken == ["B=1 k=10: RuntimeError('out of memory')", "B=4 k=5: FAISS-GPU: k too large"]


def test_quality_reports_paired_per_seed_differences() -> None:
    quality = _load("quality")
    # Three seeds: the split moves every model by far more than the model difference, which is
    # +0.01 NDCG@100 on every seed: paired, that is a clear 3/3 with sd ~0; unpaired, it drowns.
    ease = np.array([[0.30, 0.40, 0.45, 1.0], [0.20, 0.30, 0.35, 1.0], [0.40, 0.50, 0.55, 1.0]])
    ae = ease + np.array([0.02, -0.01, 0.01, 5.0])
    ae[1, 0] -= 0.05  # seed 1: R@20 behind
    rows = [
        ("AutoEncoder (default: hybrid)", ae),
        ("EASE (lambda on validation)", ease),
        ("Popularity", ease - 0.1),
    ]
    diffs = dict(quality.paired_differences(rows, "EASE"))
    assert set(diffs) == {"AutoEncoder (default: hybrid)", "Popularity"}
    np.testing.assert_allclose(
        diffs["AutoEncoder (default: hybrid)"],
        [[0.02, -0.01, 0.01], [-0.03, -0.01, 0.01], [0.02, -0.01, 0.01]],
        atol=1e-12,
    )
    table = quality._paired_table("ml-100k", rows, "EASE")
    line = next(x for x in table.splitlines() if x.startswith("| AutoEncoder"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "+0.0033 +- 0.0289 [-0.0300, +0.0200]"  # R@20: mean, sd over seeds, range
    assert cells[3] == "+0.0100 +- 0.0000 [+0.0100, +0.0100]"  # NDCG@100
    assert cells[4] == "3/3" and cells[5] == "+0.0100 +0.0100 +0.0100"
    assert "| Popularity | -0.1000 +- 0.0000" in table
    with pytest.raises(ValueError, match="baseline: expected one row"):
        quality.paired_differences(rows, "Mult-VAE")
    with pytest.raises(ValueError, match="not paired"):
        quality.paired_differences([("A", ae[:2]), ("EASE", ease)], "EASE")


def test_small_batch_and_serving_presets() -> None:
    """--small-batches: B in 1..64 at d 64/128/256; --serving: N = 100k at B 1 and 16."""
    small = bench.runner._shapes(bench.runner._parser().parse_args(["--small-batches"]))
    assert {d for d, _, _ in small} == {64, 128, 256} and {k for _, _, k in small} == {10}
    assert sorted({b for _, b, _ in small}) == [1, 2, 4, 8, 16, 32, 64] and len(small) == 21
    serving = bench.runner._shapes(bench.runner._parser().parse_args(["--serving"]))
    assert serving == [(128, 1, 10), (128, 16, 10)]
    assert bench.runner.SERVING_N == 100_000
    with pytest.raises(SystemExit):  # one preset at a time
        bench.runner._parser().parse_args(["--serving", "--quick"])
