"""Model files read back: damaged, truncated or altered files are a ValueError naming the file,
checked before anything the file claims is allocated, and the CLI prints one line for them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from recfast.models import EASE, Popularity, load_model

# torch's sparse tensors warn once per process that invariant checks are off
torch_sparse_warning = pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")


def interactions(n_users: int = 60, n_items: int = 25, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # no empty user
    return sp.csr_matrix(dense)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One saved file of each model type (the AutoEncoder ones need torch)."""
    folder = tmp_path_factory.mktemp("models")
    X = interactions()
    out = {}
    for name, model in (("ease", EASE(l2=10.0)), ("popularity", Popularity())):
        model.fit(X)
        out[name] = folder / f"{name}.model"
        model.save(out[name])
    return out


@pytest.fixture(scope="module")
def ae_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("torch")
    import warnings

    from recfast.models import AutoEncoder

    folder = tmp_path_factory.mktemp("ae")
    X = interactions()
    out = {}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse invariant checks", UserWarning)
        for variant, extra in (
            ("dae", {}),
            ("hybrid", {"linear_steps": 2}),
            ("vae", {"hidden": (8,)}),
        ):
            model = AutoEncoder(
                variant=variant,
                latent_dim=4,
                epochs=1,
                batch_size=32,
                device="cpu",
                verbose=False,
                **extra,
            )
            model.fit(X)
            out[variant] = folder / f"{variant}.model"
            model.save(out[variant])
    return out


def rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> Path:
    """Copy the zip src to dst with members replaced (bytes) or removed (None)."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as o:
        for name in z.namelist():
            data = change.get(name, z.read(name))
            if data is not None:
                o.writestr(name, data)
    return dst


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def header_bytes(path: Path) -> dict[str, Any]:
    with np.load(path) as z:
        return json.loads(bytes(z["header"]).decode("utf-8"))


def with_header(src: Path, dst: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    head = header_bytes(src)
    edit(head)
    raw = np.frombuffer(json.dumps(head).encode("utf-8"), dtype=np.uint8)
    return rewrite(src, dst, {"header.npy": npy(raw)})


def expect_damaged(path: Path, match: str = "") -> None:
    with pytest.raises(ValueError, match=match or "model file") as info:
        load_model(path)
    assert str(path) in str(info.value)


# -- the npz models (EASE, Popularity) ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ease", "popularity"])
def test_round_trip_still_exact(files: dict[str, Path], kind: str) -> None:
    X = interactions(seed=3)
    model = load_model(files[kind])
    again = load_model(files[kind])
    a, b = model.recommend(X, k=5), again.recommend(X, k=5)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert header_bytes(files[kind])["n_items"] == model.n_items_ == 25


@pytest.mark.parametrize("kind", ["ease", "popularity"])
@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_npz(files: dict[str, Path], tmp_path: Path, kind: str, cut: float) -> None:
    raw = files[kind].read_bytes()
    bad = tmp_path / "cut.model"
    bad.write_bytes(raw[: int(len(raw) * cut)])
    expect_damaged(bad)


@pytest.mark.parametrize("kind", ["ease", "popularity"])
def test_flipped_bytes_npz(files: dict[str, Path], tmp_path: Path, kind: str) -> None:
    # every byte of the members' data: a flip is either caught or changes nothing that is read
    raw = files[kind].read_bytes()
    reference = load_model(files[kind])
    bad = tmp_path / "flip.model"
    for pos in range(0, len(raw), max(1, len(raw) // 97)):
        b = bytearray(raw)
        b[pos] ^= 0x55
        bad.write_bytes(bytes(b))
        try:
            model = load_model(bad)
        except ValueError as exc:
            assert str(bad) in str(exc)
            continue
        # a flip in a field nothing reads (e.g. a zip timestamp): the same model
        assert type(model) is type(reference)
        X = interactions(seed=4)
        np.testing.assert_array_equal(model.recommend(X, k=5).ids, reference.recommend(X, k=5).ids)


@pytest.mark.parametrize(
    "kind, member", [("ease", "B.npy"), ("popularity", "item_counts.npy"), ("ease", "header.npy")]
)
def test_missing_member(files: dict[str, Path], tmp_path: Path, kind: str, member: str) -> None:
    bad = rewrite(files[kind], tmp_path / "drop.model", {member: None})
    with pytest.raises(ValueError, match="missing|not a recfast model file"):
        load_model(bad)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda h: h["config"].update(l2=-1.0), r"bad config \(l2 must be > 0"),
        (lambda h: h["config"].update(l2="x"), "bad config"),
        (lambda h: h["config"].update(extra=1), r"config holds \['extra', 'l2'\]"),
        (lambda h: h.pop("config"), "no 'config'"),
        (lambda h: h.update(config=[1]), "no 'config'"),
        (lambda h: h.update(n_items=10**12), "states 1000000000000 items"),
        (lambda h: h.update(format_version=99), "unsupported format version 99"),
        (lambda h: h.update(model_type="KNN"), "unknown model type 'KNN'"),
    ],
)
def test_edited_ease_header(
    files: dict[str, Path], tmp_path: Path, edit: Callable[[dict[str, Any]], Any], match: str
) -> None:
    bad = with_header(files["ease"], tmp_path / "edit.model", edit)
    expect_damaged(bad, match)


def test_model_of_another_type(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="holds a 'Popularity' model, not 'EASE'"):
        EASE.load(files["popularity"])


def test_header_not_json(files: dict[str, Path], tmp_path: Path) -> None:
    raw = np.frombuffer(b"\xff{not json", dtype=np.uint8)
    bad = rewrite(files["ease"], tmp_path / "h.model", {"header.npy": npy(raw)})
    expect_damaged(bad, "damaged")
    raw = np.frombuffer(b"[1, 2]", dtype=np.uint8)
    bad = rewrite(files["ease"], tmp_path / "h.model", {"header.npy": npy(raw)})
    expect_damaged(bad, "not a JSON object")


@pytest.mark.parametrize(
    "kind, member, arr, match",
    [
        ("ease", "B.npy", np.zeros((3, 4), np.float32), r"B has shape \(3, 4\)"),
        ("ease", "B.npy", np.zeros(9, np.float32), r"shape \(9,\), expected 2-D"),
        ("ease", "B.npy", np.full((25, 25), np.nan, np.float32), "NaN or infinite"),
        ("ease", "B.npy", np.array([["a"]]), "expected numbers"),
        ("popularity", "item_counts.npy", -np.ones(25, np.float32), "non-negative"),
        ("popularity", "item_counts.npy", np.ones(24, np.float32), "states 25 items"),
    ],
)
def test_altered_arrays(
    files: dict[str, Path], tmp_path: Path, kind: str, member: str, arr: np.ndarray, match: str
) -> None:
    bad = rewrite(files[kind], tmp_path / "a.model", {member: npy(arr)})
    expect_damaged(bad, match)


def test_npy_header_claiming_a_huge_array_allocates_nothing(
    files: dict[str, Path], tmp_path: Path
) -> None:
    # a .npy header stating 10^12 floats in front of 16 bytes: numpy would allocate 4 TB first
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    buf.write(b"\0" * 16)
    bad = rewrite(files["ease"], tmp_path / "huge.model", {"B.npy": buf.getvalue()})
    expect_damaged(bad, r"claims shape \(1000000, 1000000\)")


def test_zip_directory_claiming_a_huge_member(files: dict[str, Path], tmp_path: Path) -> None:
    raw = bytearray(files["popularity"].read_bytes())
    # the central directory entry of the last member: uncompressed size at offset 24
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24 : cd + 28] = (2**32 - 1).to_bytes(4, "little")
    bad = tmp_path / "dir.model"
    bad.write_bytes(bytes(raw))
    expect_damaged(bad)


def test_folder_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is a folder"):
        load_model(tmp_path)
    foreign = tmp_path / "x.zip"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not a recfast model file"):
        load_model(foreign)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "none.model")


# -- the AutoEncoder (torch.save files) -----------------------------------------------------------


@torch_sparse_warning
@pytest.mark.parametrize("variant", ["dae", "hybrid", "vae"])
def test_ae_round_trip(ae_files: dict[str, Path], variant: str) -> None:
    import torch

    from recfast.models import AutoEncoder

    payload = torch.load(ae_files[variant], weights_only=True)
    model = AutoEncoder.load(ae_files[variant])
    assert model.config.variant == variant and model.n_items_ == payload["n_items"]
    X = interactions(seed=5)
    again = load_model(ae_files[variant])
    assert isinstance(again, AutoEncoder) and again.config == model.config
    np.testing.assert_array_equal(model.recommend(X, k=5).ids, again.recommend(X, k=5).ids)
    for name, t in model.net_.state_dict().items():
        assert torch.equal(t, payload["state_dict"][name])


@torch_sparse_warning
@pytest.mark.parametrize("cut", [0.02, 0.5, 0.98])
def test_ae_truncated(ae_files: dict[str, Path], tmp_path: Path, cut: float) -> None:
    raw = ae_files["dae"].read_bytes()
    bad = tmp_path / "cut.model"
    bad.write_bytes(raw[: int(len(raw) * cut)])
    expect_damaged(bad)


@torch_sparse_warning
def test_ae_flipped_bytes(ae_files: dict[str, Path], tmp_path: Path) -> None:
    # torch's own reader skips the zip CRCs: before, most flips loaded altered weights silently
    raw = ae_files["dae"].read_bytes()
    reference = load_model(ae_files["dae"])
    X = interactions(seed=6)
    want = reference.scores(X)
    bad = tmp_path / "flip.model"
    caught = 0
    for pos in range(0, len(raw), max(1, len(raw) // 61)):
        b = bytearray(raw)
        b[pos] ^= 0x55
        bad.write_bytes(bytes(b))
        try:
            model = load_model(bad)
        except ValueError as exc:
            assert str(bad) in str(exc)
            caught += 1
            continue
        np.testing.assert_array_equal(model.scores(X), want)
    assert caught > 30


@torch_sparse_warning
@pytest.mark.parametrize("member", ["archive/data.pkl", "archive/data/0", "archive/version"])
def test_ae_missing_member(ae_files: dict[str, Path], tmp_path: Path, member: str) -> None:
    bad = rewrite(ae_files["dae"], tmp_path / "drop.model", {member: None})
    with pytest.raises(ValueError) as info:
        load_model(bad)
    assert str(bad) in str(info.value)


def edited_payload(src: Path, dst: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    import torch

    payload = torch.load(src, weights_only=True)
    edit(payload)
    torch.save(payload, dst)
    return dst


@torch_sparse_warning
@pytest.mark.parametrize(
    "edit, match",
    [
        # a config claiming 10^12 items (or a 10^9 latent): rejected before the net is built
        (
            lambda p: p.update(n_items=10**12),
            r"'w_in' has shape \(25, 4\) but the config "
            r"\(1000000000000 items",
        ),
        (lambda p: p["config"].update(latent_dim=10**9), "has shape"),
        (lambda p: p["config"].update(latent_dim=0), r"bad config \(latent_dim must be >= 1"),
        (lambda p: p["config"].update(latent_dim=4.5), r"bad config \(latent_dim must be an int"),
        (lambda p: p["config"].update(variant="svd"), r"bad config \(variant must be one of"),
        (lambda p: p["config"].update(colour="red"), r"unknown config settings \['colour'\]"),
        (
            lambda p: p["config"].pop("latent_dim"),
            r"'w_in' has shape \(25, 4\) but .* makes it "
            r"\(25, 200\)",
        ),
        (lambda p: p.pop("config"), "has no config"),
        (lambda p: p.update(n_items=True), "n_items must be a positive int"),
        (lambda p: p.update(n_items="25"), "n_items must be a positive int"),
        (lambda p: p.update(format_version=1), "unsupported format version 1"),
        (lambda p: p.update(model_type="EASE"), "does not hold an AutoEncoder"),
        (lambda p: p["state_dict"].pop("out.bias"), r"missing \['out.bias'\]"),
        (
            lambda p: p["state_dict"].update(extra=p["state_dict"]["out.bias"]),
            r"unexpected \['extra'\]",
        ),
        (lambda p: p["state_dict"].update(b_in=p["state_dict"]["b_in"][:2]), "'b_in' has shape"),
        (lambda p: p["state_dict"]["out.bias"].fill_(float("nan")), "finite floats"),
        (lambda p: p.update(state_dict=[1, 2]), "no state_dict of tensors"),
    ],
)
def test_ae_edited_payload(
    ae_files: dict[str, Path], tmp_path: Path, edit: Callable[[dict[str, Any]], Any], match: str
) -> None:
    bad = edited_payload(ae_files["dae"], tmp_path / "edit.model", edit)
    expect_damaged(bad, match)


@torch_sparse_warning
def test_ae_foreign_pickle(tmp_path: Path) -> None:
    import torch

    bad = tmp_path / "t.model"
    torch.save({"x": torch.ones(2)}, bad)
    expect_damaged(bad, "does not hold an AutoEncoder")
    torch.save([1, 2], bad)
    expect_damaged(bad, "does not hold an AutoEncoder")


# -- the CLI on damaged files: one line, no traceback ---------------------------------------------


def test_cli_damaged_model_one_line(files: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("user,item\n" + "".join(f"{u},{i}\n" for u in range(5) for i in range(25)))
    bad = rewrite(files["ease"], tmp_path / "drop.model", {"B.npy": None})
    proc = subprocess.run(
        [sys.executable, "-m", "recfast", "recommend", str(bad), str(data), "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"recfast: error: {bad}: the array 'B' is missing; damaged model file"
    ]
