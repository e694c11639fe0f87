"""The `recfast` command end to end on a generated CSV, and its one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    code, out, err = run(
        [
            "train",
            str(data_dir / "data.csv"),
            *cols(),
            "--model",
            "popularity",
            "--out",
            str(model),
        ],
        capsys,
    )
    assert code == 0, err
    assert "trained Popularity on 160 users x 60 items" in out
    meta = json.loads((data_dir / "pop.model.meta.json").read_text())
    assert meta["item_ids"] == list(range(100, 160))
    code, out, err = run(
        [
            "recommend",
            str(model),
            str(data_dir / "data.csv"),
            "u1",
            "u2",
            "-k",
            "5",
            *cols(),
            "--items",
            str(data_dir / "movies.csv"),
        ],
        capsys,
    )
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
def test_train_and_recommend_autoencoder(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    model = data_dir / "ae.model"
    code, out, err = run(
        [
            "train",
            str(data_dir / "data.csv"),
            *cols(rating=False),
            "--epochs",
            "2",
            "--latent-dim",
            "8",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(model),
        ],
        capsys,
    )
    assert code == 0, err
    assert "trained AutoEncoder" in out and model.is_file()
    code, out, err = run(
        ["recommend", str(model), str(data_dir / "data.csv"), "u3", "-k", "7", *cols(rating=False)],
        capsys,
    )
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
    code, out, err = run(
        [
            "evaluate",
            str(data_dir / "data.csv"),
            *cols(),
            "--epochs",
            "1",
            "--latent-dim",
            "8",
            "--batch-size",
            "64",
            "--device",
            "cpu",
            "--quiet",
            "--heldout-users",
            "20",
            "--ease-l2",
            "10,100",
            "--ks",
            "5",
            "10",
            "--json",
            str(out_json),
        ],
        capsys,
    )
    assert code == 0, err
    assert "R@5" in out and "NDCG@10" in out
    for name in ("AutoEncoder", "EASE", "Popularity"):
        assert name in out
    results = json.loads(out_json.read_text())["results"]
    assert set(results) == {"AutoEncoder", "EASE", "Popularity"}
    # planted groups: EASE finds the user's group, popularity cannot
    assert results["EASE"]["recall@10"] > results["Popularity"]["recall@10"] + 0.2


def test_evaluate_baselines_only(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        [
            "evaluate",
            str(data_dir / "data.csv"),
            *cols(),
            "--models",
            "popularity,ease",
            "--heldout-users",
            "0.1",
            "--ease-l2",
            "50",
        ],
        capsys,
    )
    assert code == 0, err
    assert "EASE" in out and "(l2=50)" in out and "AutoEncoder" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "{d}/missing.csv", "--out", "{d}/x"], "missing.csv: no such file"),
        (
            ["train", "{d}/data.csv", "--user-col", "user", "--out", "{d}/x"],
            "column 'user' not found",
        ),
        (
            [
                "train",
                "{d}/data.csv",
                "--user-col",
                "uid",
                "--item-col",
                "mid",
                "--rating-col",
                "uid",
                "--out",
                "{d}/x",
            ],
            "column names must differ",
        ),
        (["train", "{d}/data.csv", "--model", "svd", "--out", "{d}/x"], "invalid choice: 'svd'"),
        (["train", "{d}/data.csv"], "required: --out"),
        (["train", "{d}/data.csv", "--epochs", "0", "--out", "{d}/x"], "--epochs"),
        (
            [
                "recommend",
                "{d}/pop.model",
                "{d}/data.csv",
                "nobody",
                "--user-col",
                "uid",
                "--item-col",
                "mid",
            ],
            "unknown user id(s): 'nobody'",
        ),
        (["recommend", "{d}/none.model", "{d}/data.csv", "u1"], "none.model"),
        (["recommend", "{d}/data.csv", "{d}/data.csv", "u1"], "not a recfast model file"),
        (
            [
                "evaluate",
                "{d}/data.csv",
                "--user-col",
                "uid",
                "--item-col",
                "mid",
                "--heldout-users",
                "100",
            ],
            "leaves no training users",
        ),
        (["evaluate", "{d}/data.csv", "--models", "knn"], "unknown model(s) ['knn']"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: COMMAND"),
    ],
)
def test_user_mistakes_give_one_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    if not (data_dir / "pop.model").exists():
        assert (
            main(
                [
                    "train",
                    str(data_dir / "data.csv"),
                    *cols(),
                    "--model",
                    "popularity",
                    "--out",
                    str(data_dir / "pop.model"),
                ]
            )
            == 0
        )
        capsys.readouterr()
    code, out, err = run([a.format(d=data_dir) for a in argv], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("recfast: error: ")
    assert message in lines[0]
    assert "Traceback" not in err


def test_help_and_bench_delegation(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["--help"]) == 0
    assert "evaluate" in capsys.readouterr().out
    import recfast.bench

    seen: list[list[str]] = []
    monkeypatch.setattr(recfast.bench, "main", lambda argv: seen.append(argv) or 0)
    assert main(["bench", "--quick", "--ks", "10"]) == 0
    assert seen == [["--quick", "--ks", "10"]]


def test_python_dash_m(data_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "recfast", "train", str(data_dir / "nope.csv"), "--out", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip() == f"recfast: error: {data_dir / 'nope.csv'}: no such file or directory"
    )


@pytest.mark.data
def test_recommend_on_movielens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = SHARED_DATA / "ml-100k"
    if not path.exists():
        pytest.skip(f"{path} not present")
    model = tmp_path / "pop.model"
    assert (
        main(
            [
                "train",
                str(path),
                "--model",
                "popularity",
                "--rating-above",
                "3.5",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["recommend", str(model), str(path), "1", "-k", "3", "--items", str(path)]) == 0
    rows = parse_recs(capsys.readouterr().out)
    assert len(rows) == 3 and all(r[4] for r in rows)


def test_recommend_user_filtered_out_and_repeated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # user "low" rated everything 1: after the model's --rating-above 3 filter it has no
    # history and gets the cold-start ranking (seen items are not known, so none are removed)
    lines = ["user,item,rating"] + [f"a{u},{i},5" for u in range(6) for i in range(u % 3 + 1)]
    lines += ["low,0,1", "low,1,1"]
    data = tmp_path / "r.csv"
    data.write_text("\n".join(lines) + "\n")
    model = tmp_path / "pop.model"
    assert (
        main(
            [
                "train",
                str(data),
                "--rating-col",
                "rating",
                "--rating-above",
                "3",
                "--model",
                "popularity",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    capsys.readouterr()
    code, out, err = run(
        [
            "recommend",
            str(model),
            str(data),
            "low",
            "a0",
            "a0",
            "-k",
            "3",
            "--rating-col",
            "rating",
        ],
        capsys,
    )
    assert code == 0, err
    rows = parse_recs(out)
    assert [r[2] for r in rows if r[0] == "low"] == ["0", "1", "2"]
    # a0 saw item 0; both of its rows agree
    assert [r[2] for r in rows if r[0] == "a0"] == ["1", "2", "1", "2"]


# -- options checked, one line naming the flag ---------------------------------------------------


@pytest.mark.parametrize(
    "argv, message, code",
    [
        (["evaluate", "{d}/data.csv", "--heldout-users", "inf"], "argument --heldout-users", 2),
        (["evaluate", "{d}/data.csv", "--heldout-users", "nan"], "argument --heldout-users", 2),
        (["evaluate", "{d}/data.csv", "--heldout-users", "0"], "argument --heldout-users", 2),
        (["evaluate", "{d}/data.csv", "--heldout-users", "0.5"], "argument --heldout-users", 2),
        (["evaluate", "{d}/data.csv", "--heldout-users", "1.5"], "argument --heldout-users", 2),
        (["evaluate", "{d}/data.csv", "--heldout-users", "-3"], "argument --heldout-users", 2),
        (["evaluate", "{d}/data.csv", "--seed", "-1"], "argument --seed", 2),
        (["train", "{d}/data.csv", "--out", "{d}/x", "--seed", "-1"], "argument --seed", 2),
        (["train", "{d}/data.csv", "--out", "{d}/x", "--seed", str(2**64)], "argument --seed", 2),
        (["train", "{d}/data.csv", "--out", "{d}/x", "--sep", ""], "argument --sep", 2),
        (["train", "{d}/data.csv", "--out", "{d}/x", "--sep", "::"], "argument --sep", 2),
        (["recommend", "{d}/pop.model", "{d}/data.csv", "u1", "--sep", "\n"], "argument --sep", 2),
        (["train", "{d}/data.csv", "--out", "{d}/x", "--lr", "nan"], "argument --lr", 2),
        (["train", "{d}/data.csv", "--out", "{d}/x", "--lr", "0"], "argument --lr", 2),
        (["train", "{d}/data.csv", "--out", "{d}/x", "--l2", "inf"], "argument --l2", 2),
        (["train", "{d}/data.csv", "--out", "{d}/x", "--l2", "-1"], "argument --l2", 2),
        (
            ["train", "{d}/data.csv", "--out", "{d}/x", "--batch-size", "0"],
            "argument --batch-size",
            2,
        ),
        (
            ["train", "{d}/data.csv", "--out", "{d}/x", "--latent-dim", "-4"],
            "argument --latent-dim",
            2,
        ),
        (["train", "{d}/data.csv", "--out", "{d}/x", "--device", "gpu"], "argument --device", 2),
        (
            ["train", "{d}/data.csv", "--out", "{d}/x", "--rating-above", "nan"],
            "argument --rating-above",
            2,
        ),
        (
            ["train", "{d}/data.csv", "--out", "{d}/x", "--min-rating", "inf"],
            "argument --min-rating",
            2,
        ),
        (
            ["train", "{d}/data.csv", "--out", "{d}/x", "--min-user-interactions", "-1"],
            "argument --min-user-interactions",
            2,
        ),
        (
            ["train", "{d}/data.csv", "--out", "{d}/x", "--min-item-interactions", "-2"],
            "argument --min-item-interactions",
            2,
        ),
        (["evaluate", "{d}/data.csv", "--fold-in", "1"], "argument --fold-in", 2),
        (["evaluate", "{d}/data.csv", "--fold-in", "nan"], "argument --fold-in", 2),
        (["evaluate", "{d}/data.csv", "--ease-l2", "10,nan"], "argument --ease-l2", 2),
        (["evaluate", "{d}/data.csv", "--ease-l2", "inf"], "argument --ease-l2", 2),
        (["evaluate", "{d}/data.csv", "--ks", "0"], "argument --ks", 2),
        (["recommend", "{d}/pop.model", "{d}/data.csv", "u1", "-k", "0"], "argument -k", 2),
        (
            [
                "evaluate",
                "{d}/data.csv",
                "--user-col",
                "uid",
                "--item-col",
                "mid",
                "--models",
                "popularity",
                "--ks",
                "10",
                "61",
            ],
            "--ks 61: more than the 60 items",
            1,
        ),
        (
            [
                "evaluate",
                "{d}/data.csv",
                "--user-col",
                "uid",
                "--item-col",
                "mid",
                "--models",
                "popularity",
                "--heldout-users",
                "80",
            ],
            "--heldout-users 80: holding out 80",
            1,
        ),
        (
            [
                "train",
                "{d}/data.csv",
                "--user-col",
                "uid",
                "--item-col",
                "mid",
                "--rating-above",
                "3",
                "--out",
                "{d}/x",
            ],
            "--rating-above needs ratings",
            1,
        ),
        (["bench", "--ks", "abc"], "bench: argument --ks", 2),
        (["bench", "--ks", "0"], "bench: argument --ks", 2),
        (["bench", "--n-items", "0"], "bench: argument --n-items", 2),
        (["bench", "--tol", "nan"], "bench: argument --tol", 2),
        (["bench", "--slow-seconds", "-1"], "bench: argument --slow-seconds", 2),
        (["bench", "--worker-timeout", "0"], "bench: argument --worker-timeout", 2),
        (["bench", "--seed", "-1"], "bench: argument --seed", 2),
        (["bench", "--quick", "--full"], "bench: argument --full", 2),
        (["bench", "--out", "{d}/data.csv"], "--out {d}/data.csv: is a file", 1),
    ],
)
def test_bad_options_name_the_flag(
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
    code: int,
) -> None:
    import recfast.bench

    ran: list[list[str]] = []  # the benchmark itself never starts
    monkeypatch.setattr(recfast.bench, "main", lambda a: ran.append(a) or 0)
    if not (data_dir / "pop.model").exists():
        assert (
            main(
                [
                    "train",
                    str(data_dir / "data.csv"),
                    *cols(),
                    "--model",
                    "popularity",
                    "--out",
                    str(data_dir / "pop.model"),
                ]
            )
            == 0
        )
        capsys.readouterr()
    got, out, err = run([a.format(d=data_dir) for a in argv], capsys)
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("recfast: error: ")
    assert message.format(d=data_dir) in lines[0]
    assert ran == []


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "{d}/data.csv", "--heldout-users", "inf"],
        [
            "train",
            "{d}/data.csv",
            "--user-col",
            "uid",
            "--item-col",
            "mid",
            "--out",
            "{d}/big.model",
            "--latent-dim",
            "1000000000",
            "--epochs",
            "1",
            "--quiet",
            "--device",
            "cpu",
        ],
    ],
)
def test_no_traceback_from_the_command(data_dir: Path, argv: list[str]) -> None:
    # before: OverflowError from int(inf); torch's allocation error for 10^9 x items weights
    if "--latent-dim" in argv:
        pytest.importorskip("torch")
    proc = subprocess.run(
        [sys.executable, "-m", "recfast", *[a.format(d=data_dir) for a in argv]],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recfast: error: "), proc.stderr
    flag = "--latent-dim 1000000000" if "--latent-dim" in argv else "argument --heldout-users"
    assert flag in lines[0]
    assert not (data_dir / "big.model").exists()


@torch_sparse_warning
def test_latent_dim_too_large_refused_before_training(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from recfast.models import AutoEncoder

    monkeypatch.setattr(AutoEncoder, "fit", lambda *a, **k: pytest.fail("fit was called"))
    code, out, err = run(
        [
            "train",
            str(data_dir / "data.csv"),
            *cols(),
            "--latent-dim",
            "1000000000",
            "--device",
            "cpu",
            "--out",
            str(data_dir / "x"),
        ],
        capsys,
    )
    assert code == 1
    assert "--latent-dim 1000000000: the AutoEncoder's weights for 60 items" in err


def test_torch_allocation_error_is_one_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from recfast.models import Popularity

    def fit(self: Any, X: Any) -> Any:
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
            "allocate memory: you tried to allocate 1200000000000 bytes."
        )

    monkeypatch.setattr(Popularity, "fit", fit)
    code, out, err = run(
        [
            "train",
            str(data_dir / "data.csv"),
            *cols(),
            "--model",
            "popularity",
            "--out",
            str(data_dir / "x"),
        ],
        capsys,
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Popularity ran out of memory while training" in lines[0]
    assert "--latent-dim or --batch-size" in lines[0]


def test_unexpected_error_is_one_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import recfast.cli

    def boom(args: Any) -> int:
        raise KeyError("bug")

    monkeypatch.setitem(recfast.cli._COMMANDS, "train", boom)
    monkeypatch.delenv("RECFAST_TRACEBACK", raising=False)
    code, out, err = run(
        ["train", str(data_dir / "data.csv"), "--out", str(data_dir / "x")], capsys
    )
    assert code == 1
    assert err.strip().splitlines() == [
        "recfast: error: unexpected KeyError: 'bug' (set RECFAST_TRACEBACK=1 to see where; "
        "please report it)"
    ]
    monkeypatch.setenv("RECFAST_TRACEBACK", "1")
    with pytest.raises(KeyError):
        main(["train", str(data_dir / "data.csv"), "--out", str(data_dir / "x")])


# -- output paths checked before any work ------------------------------------------------------


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record any fit() of the baselines (the output checks must come first)."""
    from recfast.models import EASE, Popularity

    calls: list[str] = []
    for cls in (EASE, Popularity):
        monkeypatch.setattr(cls, "fit", lambda self, X, *a, **k: calls.append("fit") or self)
    return calls


@pytest.mark.parametrize(
    "out, message",
    [
        ("{t}", "--out {t}: is a folder"),
        ("{t}/missing/m.model", "--out {t}/missing/m.model: the folder {t}/missing does not exist"),
        ("{t}/file.txt/m.model", "--out {t}/file.txt/m.model: {t}/file.txt is not a folder"),
        ("{t}/data.csv", "--out {t}/data.csv: is the input data"),
        ("{t}/taken.model", "--out {t}/taken.model.meta.json: is a folder"),
    ],
)
def test_train_out_checked_first(
    tmp_path: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: list[str],
    out: str,
    message: str,
) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "taken.model.meta.json").mkdir()
    data = tmp_path / "data.csv"
    data.write_bytes((data_dir / "data.csv").read_bytes())
    before = data.read_bytes()
    code, _, err = run(
        ["train", str(data), *cols(), "--model", "popularity", "--out", out.format(t=tmp_path)],
        capsys,
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"recfast: error: {message.format(t=tmp_path)}")
    assert no_training == []
    assert data.read_bytes() == before


def test_train_out_unwritable(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], no_training: list[str]
) -> None:
    target = Path("/proc/recfast-test.model")  # not writable, even by root
    code, _, err = run(
        [
            "train",
            str(data_dir / "data.csv"),
            *cols(),
            "--model",
            "popularity",
            "--out",
            str(target),
        ],
        capsys,
    )
    assert code == 1
    assert err.startswith(f"recfast: error: --out {target}: cannot write in /proc")
    assert no_training == []


def test_evaluate_json_checked_first(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], no_training: list[str]
) -> None:
    path = tmp_path / "nodir" / "m.json"
    code, out, err = run(
        [
            "evaluate",
            str(data_dir / "data.csv"),
            *cols(),
            "--models",
            "popularity,ease",
            "--json",
            str(path),
        ],
        capsys,
    )
    assert code == 1
    assert err.strip().splitlines() == [
        f"recfast: error: --json {path}: the folder {path.parent} does not exist"
    ]
    assert no_training == [] and out == ""
    code, out, err = run(
        [
            "evaluate",
            str(data_dir / "data.csv"),
            *cols(),
            "--models",
            "popularity",
            "--json",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 1 and f"--json {tmp_path}: is a folder" in err and no_training == []


def test_evaluate_default_ks_fit_the_items(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        ["evaluate", str(data_dir / "data.csv"), *cols(), "--models", "popularity"], capsys
    )
    assert code == 0, err
    assert "R@50" in out and "R@100" not in out  # 60 items: the cut-offs 20 and 50


# -- damaged model files and descriptions ------------------------------------------------------


def test_damaged_model_files_one_line(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zipfile

    model = tmp_path / "e.model"
    assert (
        main(
            [
                "train",
                str(data_dir / "data.csv"),
                *cols(),
                "--model",
                "ease",
                "--l2",
                "10",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    capsys.readouterr()
    raw = model.read_bytes()
    bad = tmp_path / "bad.model"
    with zipfile.ZipFile(model) as z:
        members = {n: z.read(n) for n in z.namelist()}
    variants: list[bytes] = [raw[: len(raw) // 2], raw[:-10]]
    for pos in (len(raw) // 3, len(raw) // 2, 2 * len(raw) // 3):
        b = bytearray(raw)
        b[pos] ^= 0xFF
        variants.append(bytes(b))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("header.npy", members["header.npy"])  # the B array removed
    variants.append(buf.getvalue())
    for content in variants:
        bad.write_bytes(content)
        (tmp_path / "bad.model.meta.json").write_bytes(
            (tmp_path / "e.model.meta.json").read_bytes()
        )
        code, out, err = run(
            ["recommend", str(bad), str(data_dir / "data.csv"), "u1", *cols()], capsys
        )
        assert code == 1 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"recfast: error: {bad}"), err


@pytest.mark.parametrize(
    "meta, message",
    [
        ("not json", "not a model description"),
        ('{"item_ids": [[1], [2]]}', "not a model description"),
        ('{"item_ids": 5}', "not a model description"),
        ('{"item_ids": [1, 1]}', "'item_ids' repeats an id"),
        ('{"item_ids": [1, 2]}', "lists 2 items but the model has 60"),
        (
            '{"item_ids": IDS, "filters": {"min_rating": "x"}}',
            "filters.min_rating must be a number",
        ),
        ('{"item_ids": IDS, "filters": [1]}', "not a model description"),
    ],
)
def test_damaged_meta_one_line(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], meta: str, message: str
) -> None:
    model = tmp_path / "p.model"
    assert (
        main(
            [
                "train",
                str(data_dir / "data.csv"),
                *cols(),
                "--model",
                "popularity",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    capsys.readouterr()
    meta_path = tmp_path / "p.model.meta.json"
    meta_path.write_text(meta.replace("IDS", json.dumps(list(range(100, 160)))))
    code, out, err = run(
        ["recommend", str(model), str(data_dir / "data.csv"), "u1", *cols()], capsys
    )
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"recfast: error: {meta_path}")
    assert message in lines[0]


# -- recommend with AutoEncoder and EASE models, equal to model.recommend -----------------------


@pytest.fixture(scope="module")
def trained(data_dir: Path) -> dict[str, Path]:
    """EASE and AutoEncoder models trained by the command on the module's data."""
    pytest.importorskip("torch")
    import warnings

    out = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse invariant checks", UserWarning)
        for name, extra in (
            ("ease", ["--l2", "20"]),
            (
                "autoencoder",
                [
                    "--epochs",
                    "2",
                    "--latent-dim",
                    "8",
                    "--batch-size",
                    "64",
                    "--device",
                    "cpu",
                    "--quiet",
                ],
            ),
        ):
            path = data_dir / f"rec-{name}.model"
            assert (
                main(
                    [
                        "train",
                        str(data_dir / "data.csv"),
                        *cols(),
                        "--model",
                        name,
                        *extra,
                        "--out",
                        str(path),
                    ]
                )
                == 0
            )
            out[name] = path
    return out


def expected_lines(
    model_path: Path, data_dir: Path, users: list[str], k: int, include_seen: bool, titles: bool
) -> list[str]:
    """What `recommend` should print, from load_model(...).recommend on the users' rows."""
    from recfast.data import Interactions
    from recfast.models import load_model

    model = load_model(model_path)
    d = Interactions.from_csv(
        data_dir / "data.csv", user_col="uid", item_col="mid", rating_col="stars"
    )
    X = d.matrix()[d.user_index(users)]
    res = model.recommend(X, k=min(k, model.n_items_), filter_seen=not include_seen)
    lines = ["user\trank\titem\tscore" + ("\ttitle" if titles else "")]
    for r, user in enumerate(users):
        for rank, (item, score) in enumerate(zip(res.ids[r].tolist(), res.scores[r].tolist()), 1):
            if item < 0:
                break
            raw = int(d.item_ids[item])
            line = f"{user}\t{rank}\t{raw}\t{score:.6g}"
            lines.append(line + (f"\tMovie {raw - 100}" if titles else ""))
    return lines


@torch_sparse_warning
@pytest.mark.parametrize("name", ["ease", "autoencoder"])
@pytest.mark.parametrize(
    "k, include_seen, titles", [(5, False, False), (7, True, True), (1000, False, True)]
)
def test_recommend_matches_model(
    trained: dict[str, Path],
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    k: int,
    include_seen: bool,
    titles: bool,
) -> None:
    users = ["u3", "u10", "u3", "u151"]
    argv = [
        "recommend",
        str(trained[name]),
        str(data_dir / "data.csv"),
        *users,
        "-k",
        str(k),
        *cols(),
    ]
    if include_seen:
        argv.append("--include-seen")
    if titles:
        argv += ["--items", str(data_dir / "movies.csv")]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    got = out.strip().splitlines()
    assert got == expected_lines(trained[name], data_dir, users, k, include_seen, titles)
    rows = parse_recs(out)
    import pandas as pd

    df = pd.read_csv(data_dir / "data.csv")
    seen = set(df.loc[df.uid == "u3", "mid"])
    recs = {int(r[2]) for r in rows if r[0] == "u3"}
    if include_seen:
        assert len([r for r in rows if r[0] == "u3"]) == 2 * k  # u3 asked twice, all items open
        assert seen & recs
    else:
        assert not seen & recs
        if k >= 60:  # every unseen item, once each
            assert recs == set(range(100, 160)) - seen


# -- recommend --explain ------------------------------------------------------------------------


def expected_because(
    model_path: Path, data_dir: Path, user: str, raw_item: int, titles: bool
) -> str:
    """The explanation column for one recommendation, from load_model(...).explain."""
    from recfast.data import Interactions
    from recfast.models import load_model

    model = load_model(model_path)
    d = Interactions.from_csv(
        data_dir / "data.csv", user_col="uid", item_col="mid", rating_col="stars"
    )
    X = d.matrix()[d.user_index([user])]
    X.data[:] = 1.0  # the command reads binary histories
    item = int(np.flatnonzero(d.item_ids == raw_item)[0])
    e = model.explain(X, item, n=3)
    names = [
        f"Movie {int(d.item_ids[j]) - 100}" if titles else str(int(d.item_ids[j]))
        for j in e.ids[e.contributions > 0]
    ]
    return "because you liked " + ", ".join(names) if names else ""


@torch_sparse_warning
@pytest.mark.parametrize("name", ["ease", "autoencoder"])
@pytest.mark.parametrize("titles", [False, True])
def test_recommend_explain(
    trained: dict[str, Path],
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    titles: bool,
) -> None:
    users = ["u3", "u10"]
    argv = [
        "recommend",
        str(trained[name]),
        str(data_dir / "data.csv"),
        *users,
        "-k",
        "4",
        *cols(),
        "--explain",
    ]
    if titles:
        argv += ["--items", str(data_dir / "movies.csv")]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert (
        out.splitlines()[0]
        == "user\trank\titem\tscore" + ("\ttitle" if titles else "") + "\texplanation"
    )
    rows = parse_recs(out)
    assert len(rows) == 8
    import pandas as pd

    df = pd.read_csv(data_dir / "data.csv")
    named = 0
    for r in rows:
        because = r[-1]
        assert because == expected_because(trained[name], data_dir, r[0], int(r[2]), titles)
        if because:
            named += 1
            liked = because.removeprefix("because you liked ").split(", ")
            assert 1 <= len(liked) <= 3
            seen = set(df.loc[df.uid == r[0], "mid"])
            raw = (
                [int(t.removeprefix("Movie ")) + 100 for t in liked]
                if titles
                else [int(t) for t in liked]
            )
            assert set(raw) <= seen  # only the user's own history explains
    assert named >= 6  # group-structured data: most recommendations have positive reasons


def test_recommend_explain_needs_a_model_that_explains(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = data_dir / "pop-explain.model"
    assert (
        main(
            [
                "train",
                str(data_dir / "data.csv"),
                *cols(),
                "--model",
                "popularity",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    capsys.readouterr()
    code, out, err = run(
        ["recommend", str(model), str(data_dir / "data.csv"), "u1", *cols(), "--explain"], capsys
    )
    assert code == 1 and out == ""
    assert err.strip() == (
        f"recfast: error: --explain needs an EASE or AutoEncoder model; {model} holds a Popularity"
    )
