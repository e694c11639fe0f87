"""The `recfast` command end to end on a generated CSV, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recfast.cli import main

pytest.importorskip("pandas")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# torch's sparse tensors warn once per process that invariant checks are off; the models
# package triggers it, so the autoencoder tests tolerate exactly that warning
torch_sparse_warning = pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 groups of users, each drawing 8 of its group's 15 items (ids 100 + item)."""
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    lines = ["uid,mid,stars,ts"]
    for u in range(160):
        g = u % 4
        for t, i in enumerate(rng.choice(np.arange(g * 15, g * 15 + 15), 8, replace=False)):
            lines.append(f"u{u},{100 + i},{rng.integers(3, 6)},{t}")
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    titles = ["movieId,title,genres"] + [f"{100 + i},Movie {i},Drama" for i in range(60)]
    (folder / "movies.csv").write_text("\n".join(titles) + "\n")
    return folder


def cols(rating: bool = True) -> list[str]:
    out = ["--user-col", "uid", "--item-col", "mid"]
    return out + (["--rating-col", "stars"] if rating else [])


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def parse_recs(out: str) -> list[list[str]]:
    lines = out.strip().splitlines()
    return [line.split("\t") for line in lines[1:]]


def test_train_and_recommend_popularity(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = data_dir / "pop.model"
    code, out, err = run(["train", str(data_dir / "data.csv"), *cols(), "--model", "popularity",
                          "--out", str(model)], capsys)
    assert code == 0, err
    assert "trained Popularity on 160 users x 60 items" in out
    meta = json.loads((data_dir / "pop.model.meta.json").read_text())
    assert meta["item_ids"] == list(range(100, 160))
    code, out, err = run(["recommend", str(model), str(data_dir / "data.csv"), "u1", "u2",
                          "-k", "5", *cols(), "--items", str(data_dir / "movies.csv")], capsys)
    assert code == 0, err
    assert out.splitlines()[0] == "user\trank\titem\tscore\ttitle"
    rows = parse_recs(out)
    assert [r[0] for r in rows] == ["u1"] * 5 + ["u2"] * 5
    assert [r[1] for r in rows[:5]] == ["1", "2", "3", "4", "5"]
    for r in rows:
        assert r[4] == f"Movie {int(r[2]) - 100}"
    # seen items are never recommended
    import pandas as pd

    df = pd.read_csv(data_dir / "data.csv")
    seen = set(df.loc[df.uid == "u1", "mid"])
    assert not seen & {int(r[2]) for r in rows if r[0] == "u1"}


@torch_sparse_warning
def test_train_and_recommend_autoencoder(data_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    model = data_dir / "ae.model"
    code, out, err = run(["train", str(data_dir / "data.csv"), *cols(rating=False),
                          "--epochs", "2", "--latent-dim", "8", "--batch-size", "64",
                          "--device", "cpu", "--quiet", "--out", str(model)], capsys)
    assert code == 0, err
    assert "trained AutoEncoder" in out and model.is_file()
    code, out, err = run(["recommend", str(model), str(data_dir / "data.csv"), "u3", "-k", "7",
                          *cols(rating=False)], capsys)
    assert code == 0, err
    rows = parse_recs(out)
    assert len(rows) == 7 and all(100 <= int(r[2]) < 160 for r in rows)
    scores = [float(r[3]) for r in rows]
    assert scores == sorted(scores, reverse=True)


@torch_sparse_warning
@pytest.mark.slow
def test_evaluate_table_and_json(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    out_json = data_dir / "metrics.json"
    code, out, err = run(["evaluate", str(data_dir / "data.csv"), *cols(), "--epochs", "1",
                          "--latent-dim", "8", "--batch-size", "64", "--device", "cpu",
                          "--quiet", "--heldout-users", "20", "--ease-l2", "10,100",
                          "--ks", "5", "10", "--json", str(out_json)], capsys)
    assert code == 0, err
    assert "R@5" in out and "NDCG@10" in out
    for name in ("AutoEncoder", "EASE", "Popularity"):
        assert name in out
    results = json.loads(out_json.read_text())["results"]
    assert set(results) == {"AutoEncoder", "EASE", "Popularity"}
    # planted groups: EASE finds the user's group, popularity cannot
    assert results["EASE"]["recall@10"] > results["Popularity"]["recall@10"] + 0.2


def test_evaluate_baselines_only(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["evaluate", str(data_dir / "data.csv"), *cols(), "--models",
                          "popularity,ease", "--heldout-users", "0.1", "--ease-l2", "50"],
                         capsys)
    assert code == 0, err
    assert "EASE" in out and "(l2=50)" in out and "AutoEncoder" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "{d}/missing.csv", "--out", "{d}/x"], "missing.csv: no such file"),
        (["train", "{d}/data.csv", "--user-col", "user", "--out", "{d}/x"],
         "column 'user' not found"),
        (["train", "{d}/data.csv", "--user-col", "uid", "--item-col", "mid", "--rating-col",
          "uid", "--out", "{d}/x"], "column names must differ"),
        (["train", "{d}/data.csv", "--model", "svd", "--out", "{d}/x"], "invalid choice: 'svd'"),
        (["train", "{d}/data.csv"], "required: --out"),
        (["train", "{d}/data.csv", "--epochs", "0", "--out", "{d}/x"], "--epochs"),
        (["recommend", "{d}/pop.model", "{d}/data.csv", "nobody", "--user-col", "uid",
          "--item-col", "mid"], "unknown user id(s): 'nobody'"),
        (["recommend", "{d}/none.model", "{d}/data.csv", "u1"], "none.model"),
        (["recommend", "{d}/data.csv", "{d}/data.csv", "u1"], "not a recfast model file"),
        (["evaluate", "{d}/data.csv", "--user-col", "uid", "--item-col", "mid",
          "--heldout-users", "100"], "leaves no training users"),
        (["evaluate", "{d}/data.csv", "--models", "knn"], "unknown model(s) ['knn']"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: COMMAND"),
    ],
)
def test_user_mistakes_give_one_line(data_dir: Path, capsys: pytest.CaptureFixture[str],
                                     argv: list[str], message: str) -> None:
    if not (data_dir / "pop.model").exists():
        assert main(["train", str(data_dir / "data.csv"), *cols(), "--model", "popularity",
                     "--out", str(data_dir / "pop.model")]) == 0
        capsys.readouterr()
    code, out, err = run([a.format(d=data_dir) for a in argv], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("recfast: error: ")
    assert message in lines[0]
    assert "Traceback" not in err


def test_help_and_bench_delegation(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["--help"]) == 0
    assert "evaluate" in capsys.readouterr().out
    import recfast.bench

    seen: list[list[str]] = []
    monkeypatch.setattr(recfast.bench, "main", lambda argv: seen.append(argv) or 0)
    assert main(["bench", "--quick", "--ks", "10"]) == 0
    assert seen == [["--quick", "--ks", "10"]]


def test_python_dash_m(data_dir: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "recfast", "train", str(data_dir / "nope.csv"),
                           "--out", "x"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"recfast: error: {data_dir / 'nope.csv'}: no such file or directory"


@pytest.mark.data
def test_recommend_on_movielens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = SHARED_DATA / "ml-100k"
    if not path.exists():
        pytest.skip(f"{path} not present")
    model = tmp_path / "pop.model"
    assert main(["train", str(path), "--model", "popularity", "--rating-above", "3.5",
                 "--out", str(model)]) == 0
    capsys.readouterr()
    assert main(["recommend", str(model), str(path), "1", "-k", "3", "--items", str(path)]) == 0
    rows = parse_recs(capsys.readouterr().out)
    assert len(rows) == 3 and all(r[4] for r in rows)


def test_recommend_user_filtered_out_and_repeated(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # user "low" rated everything 1: after the model's --rating-above 3 filter it has no
    # history and gets the cold-start ranking (seen items are not known, so none are removed)
    lines = ["user,item,rating"] + [f"a{u},{i},5" for u in range(6) for i in range(u % 3 + 1)]
    lines += ["low,0,1", "low,1,1"]
    data = tmp_path / "r.csv"
    data.write_text("\n".join(lines) + "\n")
    model = tmp_path / "pop.model"
    assert main(["train", str(data), "--rating-col", "rating", "--rating-above", "3",
                 "--model", "popularity", "--out", str(model)]) == 0
    capsys.readouterr()
    code, out, err = run(["recommend", str(model), str(data), "low", "a0", "a0", "-k", "3",
                          "--rating-col", "rating"], capsys)
    assert code == 0, err
    rows = parse_recs(out)
    assert [r[2] for r in rows if r[0] == "low"] == ["0", "1", "2"]
    # a0 saw item 0; both of its rows agree
    assert [r[2] for r in rows if r[0] == "a0"] == ["1", "2", "1", "2"]
