"""Autoencoder recommenders trained with PyTorch: AE, Mult-DAE, Mult-VAE and the hybrid default.

Every variant reads a user's interaction row x (a batch of CSR rows made sparse tensors per batch;
the whole matrix is never densified), encodes it to a latent vector and decodes scores over all
items. The decoder ends in one linear layer, so a user's scores are a dot product:

    score(u, j) = <h_u, W_j> + b_j                                  (ae, dae, vae)
    score(u, j) = <h_u, W_j> + <x_u, B_j> + b_j                     (hybrid, n_items <= 8000)
    score(u, j) = <h_u, W_j> + <x_u U, V_j> + b_j                   (hybrid, more items)

where h_u is the decoder's last hidden activation (the latent itself when there are no hidden
layers; for the VAE the mean), W_j the decoder's output row for item j, b_j its bias, x_u the
user's raw history, B_j column j of the item-item matrix B and U, V the low-rank shortcut.
`recommend` passes the user vectors [h_u, x_u U, 1] and item vectors [W_j, V_j, b_j] to
`recfast.topk(metric="dot")`, so its ranking is exactly the model's own scores. For the full-rank
hybrid x_u is sparse: there the dense part <h_u, W_j> + b_j plus x_u B (native, nnz(x) x n_items
multiply-adds) is selected by `recfast.select_topk`, which has the same tie and padding rules;
folding x_u into the vectors would add n_items dimensions. That path runs the network's forward
pass natively, block by block (the dense layers with the top-k core's packed kernel in its
dense-scores mode), and `scores()` computes the same numbers the same way.

The hybrid (the default) is a linear item-item autoencoder plus a deep denoising autoencoder
that corrects it, both trained by gradient descent on squared error:

1. B (n_items x n_items, zero diagonal) minimizes ||X - XB||^2 + lambda ||B||^2 -- EASE's
   objective, convex -- by full-batch projected gradient steps (Nesterov, Jacobi-preconditioned;
   see `_fit_item_item`), from B = 0; lambda is picked on the validation users from
   `linear_l2_grid` when fit() gets validation data, else `linear_l2`.
2. With B frozen, the denoising autoencoder (input dropout, tanh layers 300-200-300, output layer
   initialized to zero so training starts from the linear model) is trained by Adam on
   ||x - x B - f(x~)||^2, i.e. on the linear part's residual; the best epoch by validation
   NDCG@100 is kept.

Why: on MovieLens-sized data the linear item-item model (EASE) ranks better than deep
autoencoders alone (Mult-DAE trails it by several percent), and gradient descent on a low-rank
U V' does not reach its optimum; the full-rank B does, in a few dozen full-batch steps, and
the deep part adds the non-linear corrections. Above `full_rank_max_items` items B would not fit
the memory target (B plus the optimizer's buffers are ~4 n_items^2 floats: 1 GiB at 8000 items),
so the item-item part becomes the rank-`linear_rank` shortcut U V' trained jointly with the deep
part by Adam (its diagonal x_j U_j . V_j removed during training, as in EASE). At inference the
score formula holds for all items; an item's own history entry only affects already-seen items,
which are filtered out by default (`filter_seen=True`).

Costs: `python bench/train_bench.py` measures fit, recommend and one ML-20M-sized epoch
(wall, CPU, peak memory) on synthetic data of MovieLens sizes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _native
from .._inputs import as_interactions, available_cpus, check_float, check_k, check_positive_int
from .._io import atomic_write
from .._types import TopK
from ..metrics import ndcg_at_k
from ..topk import topk
from ._explain import Explanation, check_history, check_item, check_n, ranked
from ._features import MAX_FEATURES, FeatureEncoder, RidgeProblem, check_item_features
from ._persist import damaged, open_model_zip
from ._scoring import (
    build_exclusion,
    column_range,
    cosine_similar_items,
    dot_topk,
    exclusion_in_range,
    item_item_scores,
    item_item_topk,
    with_offset,
)
from ._torch import require_torch
from .base import Recommender

VARIANTS = ("hybrid", "dae", "vae", "ae")
FORMAT_VERSION = 2
# The feature encoder's l2 (times the features' mean variance x items) is picked from these on
# items held out of its fit, ranked for at most FEATURE_L2_USERS of their users.
FEATURE_L2_GRID = (0.01, 0.1, 1.0, 10.0)
FEATURE_L2_USERS = 2000
# The axes of each weight that run over the items (they grow when items are added).
_ITEM_AXES = {
    "w_in": (0,),
    "out.weight": (0,),
    "out.bias": (0,),
    "item_item": (0, 1),
    "u": (0,),
    "v": (0,),
}


@dataclass
class AutoEncoderConfig:
    """Resolved training settings; None in the constructor means the variant's default here."""

    variant: str = "hybrid"  # hybrid = Mult-DAE + low-rank linear shortcut; dae; vae; ae (MSE)
    latent_dim: int = 200  # size of the bottleneck, as in Liang et al. 2018
    hidden: tuple = (600,)  # encoder hidden layers; the decoder mirrors them
    dropout: float = 0.5  # input dropout (denoising); 0 for the plain ae
    epochs: int = 100  # passes over the training users
    lr: float = 1e-3  # Adam learning rate
    batch_size: int = 500  # users per step
    weight_decay: float = 0.0  # lambda of the total objective: sum_u loss_u + lambda ||W||^2
    linear_rank: int = 0  # rank of the low-rank shortcut U V' (hybrid above full_rank_max_items)
    linear_l2: float = 0.0  # lambda of the item-item part, same scale as weight_decay
    full_rank_max_items: int = 8000  # hybrid: full-rank item-item B up to this many items
    linear_steps: int = 16  # hybrid full-rank: full-batch gradient steps on B (first lambda)
    linear_l2_grid: tuple = (1000.0, 500.0, 200.0, 100.0)  # lambdas tried when validation is given
    anneal_cap: float = 0.2  # Mult-VAE: largest KL weight beta
    anneal_steps: int = 20000  # Mult-VAE: updates over which beta grows linearly to the cap
    random_state: int = 0  # seeds initialisation, shuffling and dropout
    loss: str = "mult"  # hybrid/dae: "mult" (multinomial likelihood) or "mse" (squared error)
    eval_every: int = 1  # epochs between validation passes when validation is given


# Per-variant defaults. hybrid: lambda=200 without validation data (EASE's best on ml-100k);
# the deep residual part peaks after a few epochs on ml-100k validation users, hence 15 epochs;
# its hidden layer of 300 ranked as well as 600 (5 paired seeds: ml-latest-small NDCG@100
# +0.0029 +- 0.0033, ml-100k -0.0015 +- 0.0083) at half the output layer's cost in recommend.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "hybrid": dict(
        latent_dim=200,
        hidden=(300,),
        dropout=0.5,
        epochs=15,
        batch_size=500,
        weight_decay=0.0,
        linear_rank=512,
        linear_l2=200.0,
        loss="mse",
    ),
    "dae": dict(
        latent_dim=200, hidden=(), dropout=0.5, epochs=100, batch_size=500, weight_decay=0.0
    ),
    "vae": dict(
        latent_dim=200, hidden=(600,), dropout=0.5, epochs=100, batch_size=500, weight_decay=0.0
    ),
    "ae": dict(
        latent_dim=200, hidden=(600,), dropout=0.0, epochs=100, batch_size=500, weight_decay=0.0
    ),
}


def _resolve_device(device: str, torch: Any) -> Any:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch has no CUDA here; use device='cpu'")
    return dev


def uses_full_rank(cfg: AutoEncoderConfig, n_items: int) -> bool:
    """The hybrid's item-item part is a full n_items x n_items B up to full_rank_max_items items.

    Above that (B and the two n_items^2 buffers of its optimizer would pass ~0.75 GiB at 8000
    items, and a step costs O(n_items^2) memory traffic at least) it is the rank-`linear_rank`
    shortcut U V' trained jointly with the deep part by Adam.
    """
    return cfg.variant == "hybrid" and n_items <= cfg.full_rank_max_items


def _build_net(torch: Any, cfg: AutoEncoderConfig, n_items: int) -> Any:
    nn = torch.nn
    module: Any = nn.Module  # mypy takes no attribute of an untyped value as a base class

    class _Net(module):
        def __init__(self) -> None:
            super().__init__()
            dims = [*cfg.hidden, cfg.latent_dim]
            enc_out = dims[0] * (2 if cfg.variant == "vae" and len(dims) == 1 else 1)
            # First encoder layer as a parameter used by sparse @ dense (input rows are sparse).
            self.w_in = nn.Parameter(torch.empty(n_items, enc_out))
            self.b_in = nn.Parameter(torch.zeros(enc_out))
            layers = []
            for i in range(1, len(dims)):
                out = dims[i] * (2 if cfg.variant == "vae" and i == len(dims) - 1 else 1)
                layers.append(nn.Linear(dims[i - 1], out))
            self.enc = nn.ModuleList(layers)
            back = [cfg.latent_dim, *reversed(cfg.hidden)]
            self.dec = nn.ModuleList(nn.Linear(back[i], back[i + 1]) for i in range(len(back) - 1))
            self.out = nn.Linear(back[-1], n_items)
            self.full = uses_full_rank(cfg, n_items)
            rank = min(cfg.linear_rank, n_items) if cfg.variant == "hybrid" and not self.full else 0
            self.rank = rank
            if self.full:  # B, trained by full-batch gradient steps before the deep part
                self.register_buffer("item_item", torch.zeros(n_items, n_items))
            if rank:
                self.u = nn.Parameter(torch.empty(n_items, rank))
                self.v = nn.Parameter(torch.empty(n_items, rank))
            self._init()

        def _init(self) -> None:
            for w in [
                self.w_in,
                *[m.weight for m in self.enc],
                *[m.weight for m in self.dec],
                self.out.weight,
            ]:
                nn.init.xavier_uniform_(w)
            for m in [*self.enc, *self.dec, self.out]:
                nn.init.normal_(m.bias, std=0.001)
            if self.full:  # the deep part starts as a zero correction of the linear scores
                nn.init.zeros_(self.out.weight)
                nn.init.zeros_(self.out.bias)
            if self.rank:
                nn.init.normal_(self.u, std=0.01)
                nn.init.normal_(self.v, std=0.01)

        def encode(self, xs: Any) -> tuple[Any, Any]:
            """xs: normalized input (B, n_items), sparse (training, inference) or dense
            (explanations' gradients). Returns (mean, logvar or None)."""
            vae = cfg.variant == "vae"
            h = (torch.sparse.mm(xs, self.w_in) if xs.is_sparse else xs @ self.w_in) + self.b_in
            n = len(self.enc)
            if not (vae and n == 0):
                h = torch.tanh(h)
            for i, layer in enumerate(self.enc):
                h = layer(h)
                if not (vae and i == n - 1):
                    h = torch.tanh(h)
            if vae:
                return h[:, : cfg.latent_dim], h[:, cfg.latent_dim :]
            return h, None

        def hidden_of(self, z: Any) -> Any:
            """The decoder's last hidden activation: the user vector of the output layer."""
            for layer in self.dec:
                z = torch.tanh(layer(z))
            return z

        def linear_user(self, xs: Any) -> Any:
            return torch.sparse.mm(xs, self.u)

    return _Net()


class AutoEncoder(Recommender):
    """Autoencoder recommender (PyTorch). See the module docstring for the exact score.

    Parameters
    ----------
    latent_dim, hidden, dropout, epochs, lr, batch_size, weight_decay, linear_rank, linear_l2
        training settings; None takes the variant's default (`AutoEncoderConfig`).
    variant
        "hybrid" (default: item-item linear autoencoder B fitted by gradient descent,
        plus a denoising autoencoder trained on its residual; low-rank U V' above
        full_rank_max_items items), "dae" (Mult-DAE), "vae" (Mult-VAE with KL annealing),
        "ae" (plain MSE).
    full_rank_max_items
        hybrid: largest item count with a full-rank B (default 8000).
    linear_steps
        hybrid: full-batch gradient steps on B for the first lambda (half that
        for each further lambda, warm-started).
    linear_l2_grid
        hybrid: lambdas tried on validation data when fit() gets some;
        () to always use linear_l2.
    device
        "auto" (CUDA when torch has it, else CPU), "cpu", "cuda", "cuda:N".
    random_state
        seed; the same seed on the same device gives the same embeddings.
    verbose
        show a tqdm progress bar with the loss.
    num_threads
        torch CPU threads during fit/inference (None: leave torch's setting).
    """

    def __init__(
        self,
        latent_dim: int | None = None,
        hidden: Any = None,
        dropout: float | None = None,
        epochs: int | None = None,
        lr: float = 1e-3,
        batch_size: int | None = None,
        weight_decay: float | None = None,
        variant: str = "hybrid",
        *,
        linear_rank: int | None = None,
        linear_l2: float | None = None,
        anneal_cap: float = 0.2,
        anneal_steps: int = 20000,
        device: str = "auto",
        random_state: int = 0,
        verbose: bool = True,
        num_threads: int | None = None,
        eval_every: int = 1,
        loss: str | None = None,
        full_rank_max_items: int = 8000,
        linear_steps: int = 16,
        linear_l2_grid: Any = (1000.0, 500.0, 200.0, 100.0),
    ) -> None:
        require_torch()
        if not isinstance(variant, str) or variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        d = _DEFAULTS[variant]
        pick = lambda v, name: d[name] if v is None else v  # noqa: E731
        hidden = pick(hidden, "hidden")
        if isinstance(hidden, (int, np.integer)) and not isinstance(hidden, bool):
            hidden = (int(hidden),)
        if not isinstance(hidden, (tuple, list)):
            raise TypeError(
                f"hidden must be a sequence of layer sizes, got {type(hidden).__name__}"
            )
        hidden = tuple(check_positive_int(h, "hidden") for h in hidden)
        if not isinstance(device, str):
            raise TypeError(f"device must be a string, got {type(device).__name__}")
        if not isinstance(verbose, (bool, np.bool_)):
            raise TypeError(f"verbose must be True or False, got {type(verbose).__name__}")
        self.config = AutoEncoderConfig(
            variant=variant,
            latent_dim=check_positive_int(pick(latent_dim, "latent_dim"), "latent_dim"),
            hidden=hidden,
            dropout=check_float(pick(dropout, "dropout"), "dropout", maximum=1.0, strict_max=True),
            epochs=check_positive_int(pick(epochs, "epochs"), "epochs"),
            lr=check_float(lr, "lr", strict_min=True),
            batch_size=check_positive_int(pick(batch_size, "batch_size"), "batch_size"),
            weight_decay=check_float(pick(weight_decay, "weight_decay"), "weight_decay"),
            linear_rank=check_positive_int(
                pick(linear_rank, "linear_rank") if variant == "hybrid" else (linear_rank or 0),
                "linear_rank",
                minimum=0,
            ),
            linear_l2=check_float(
                pick(linear_l2, "linear_l2") if variant == "hybrid" else (linear_l2 or 0.0),
                "linear_l2",
            ),
            anneal_cap=check_float(anneal_cap, "anneal_cap"),
            anneal_steps=check_positive_int(anneal_steps, "anneal_steps"),
            random_state=check_positive_int(random_state, "random_state", minimum=0),
            eval_every=check_positive_int(eval_every, "eval_every"),
            loss=d.get("loss", "mult") if loss is None else loss,
        )
        if variant == "hybrid":
            self.config.full_rank_max_items = check_positive_int(
                full_rank_max_items, "full_rank_max_items", minimum=0
            )
            self.config.linear_steps = check_positive_int(linear_steps, "linear_steps")
            grid = tuple(
                check_float(g, "linear_l2_grid", strict_min=True) for g in (linear_l2_grid or ())
            )
            self.config.linear_l2_grid = tuple(sorted(set(grid), reverse=True))
        if self.config.loss not in ("mult", "mse"):
            raise ValueError(f"loss must be 'mult' or 'mse', got {loss!r}")
        if variant == "hybrid" and self.config.linear_rank == 0:
            raise ValueError("linear_rank must be >= 1 for variant='hybrid' (use variant='dae')")
        self.device = device
        self.verbose = bool(verbose)
        self.num_threads = (
            None if num_threads is None else check_positive_int(num_threads, "num_threads")
        )
        _resolve_device(device, require_torch())  # validate now

    def _repr_params(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self.config).items()}

    # ------------------------------------------------------------------ tensors
    def _sparse_batch(self, m: sp.csr_matrix, train: bool, gen: Any = None) -> Any:
        """Rows of m as a torch sparse (COO) tensor, L2-normalized, with input dropout in training."""
        torch = self._torch
        coo = m.tocoo()
        vals = torch.from_numpy(coo.data.astype(np.float32))
        rows = torch.from_numpy(coo.row.astype(np.int64))
        cols = torch.from_numpy(coo.col.astype(np.int64))
        p = self.config.dropout
        # normalize by the full row's norm, then drop (Liang et al.: normalize, then dropout)
        norm = torch.zeros(m.shape[0]).index_add_(0, rows, vals * vals).sqrt_()
        raw = clean = vals
        vals = vals / norm.clamp_min(1e-12)[rows]
        if train and p > 0:
            keep = (torch.rand(vals.shape[0], generator=gen) >= p).float() / (1.0 - p)
            vals = vals * keep
            raw = raw * keep
        idx = torch.stack([rows, cols])

        def make(v: Any) -> Any:
            return torch.sparse_coo_tensor(
                idx, v, m.shape, is_coalesced=True, check_invariants=False
            ).to(self._dev)

        # the deep path reads the normalized rows, the linear shortcut the raw ones
        if getattr(self.net_, "full", False):  # B was fitted on clean rows: it reads them
            return make(vals), make(clean)
        return make(vals), (make(raw) if self.net_.rank else None)

    def _forward(self, batch: Any, train: bool) -> tuple[Any, Any]:
        """Logits over all items (B, n_items) and the KL term (VAE) or None."""
        torch = self._torch
        net = self.net_
        xs, xr = batch
        mu, logvar = net.encode(xs)
        kl = None
        z = mu
        if logvar is not None:
            if train:
                z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        h = net.hidden_of(z)
        logits = net.out(h)
        if net.full:  # the fitted item-item part (frozen here) plus the deep correction
            logits = logits + torch.sparse.mm(xr, net.item_item)
        if net.rank:
            lu = net.linear_user(xr)
            logits = logits + lu @ net.v.T
            if train:  # no item predicts itself through the shortcut (EASE's constraint)
                diag = (net.u * net.v).sum(1)
                logits = logits - (xr.to_dense() * diag[None, :])
        return logits, kl

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        X: Any,
        *,
        validation: Any = None,
        callback: Callable | None = None,
        item_features: Any = None,
    ) -> AutoEncoder:
        """Train on the users x items matrix X (rows of CSR sparse, batches made per step).

        validation: (input_csr, target_csr) of held-out users: NDCG@100 is measured every
            `eval_every` epochs and the best epoch's weights are kept (`best_epoch_`,
            `history_`).
        callback: called as callback(model, epoch, logs) after each epoch; returning False
            stops training.
        item_features: an items x features matrix (scipy.sparse or dense numbers: one-hot
            categories, multi-hot genres or tags, standardized numbers, embeddings; see
            `recfast.data.item_features`). After training, a feature encoder (ridge
            regression, its l2 picked on items held out of it) learns to map an item's
            features to its item vector; items without interactions in X get their vector
            from their features, and `add_items` adds new items the same way
            (`feature_encoder_`).
        """
        torch = require_torch()
        self._torch = torch
        m = as_interactions(X)
        if m.shape[0] == 0 or m.nnz == 0:
            raise ValueError("X must hold at least one interaction")
        features = None
        if item_features is not None:
            features = check_item_features(item_features, m.shape[1])
        if validation is not None:
            if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
                raise TypeError("validation must be a pair (input_csr, target_csr)")
            v_in = as_interactions(validation[0], "validation input", n_items=m.shape[1])
            v_tg = as_interactions(validation[1], "validation target", n_items=m.shape[1])
            if v_in.shape[0] != v_tg.shape[0]:
                raise ValueError("validation input and target must have the same number of users")
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable")
        cfg = self.config
        self._dev = _resolve_device(self.device, torch)
        n_users, n_items = m.shape
        self.n_items_ = int(n_items)
        old_threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.random_state)
                self.net_ = _build_net(torch, cfg, n_items).to(self._dev)
                self._train(m, (v_in, v_tg) if validation is not None else None, callback)
        finally:
            torch.set_num_threads(old_threads)
        self.net_.eval()
        self._drop_inference_caches()
        self.feature_encoder_: FeatureEncoder | None = None
        if features is not None:
            self._fit_feature_encoder(m, features)
        return self

    # ------------------------------------------------------------------ item features
    def _fit_feature_encoder(self, m: sp.csr_matrix, F: Any) -> None:
        """Regress the item vectors of the items with interactions on their features, then
        give the items without any their predicted vectors."""
        counts = np.diff(sp.csc_matrix(m).indptr)
        warm = np.flatnonzero(counts > 0)
        targets = self._scoring_items()
        l2 = self._choose_feature_l2(m, F, targets, warm)
        self.feature_encoder_ = RidgeProblem(F[warm], targets[warm]).solve(l2)
        cold = np.flatnonzero(counts == 0)
        if cold.size:
            self._write_item_vectors(cold, self.feature_encoder_.predict(F[cold]))

    def _choose_feature_l2(
        self, m: sp.csr_matrix, F: Any, targets: np.ndarray, warm: np.ndarray
    ) -> float:
        """The l2 of FEATURE_L2_GRID whose encoder ranks best a tenth of the items held out of
        its fit: their predicted vectors are ranked for the users who interacted with them
        (those items removed from the histories), by recfast.metrics' NDCG@100."""
        grid = FEATURE_L2_GRID
        rng = np.random.default_rng(self.config.random_state)
        if warm.size < 20:
            return grid[len(grid) // 2]
        held = np.sort(rng.choice(warm, size=max(2, warm.size // 10), replace=False))
        keep = np.setdiff1d(warm, held)
        target = sp.csr_matrix(m[:, held])
        users = np.flatnonzero(np.diff(target.indptr) > 0)
        if users.size == 0:
            return grid[len(grid) // 2]
        if users.size > FEATURE_L2_USERS:
            users = np.sort(rng.choice(users, FEATURE_L2_USERS, replace=False))
        mask = np.ones(m.shape[1], np.float32)
        mask[held] = 0.0
        history = sp.csr_matrix(m[users] @ sp.diags(mask))
        history.eliminate_zeros()
        u = self.user_embeddings(history)
        u = np.concatenate([u, np.ones((u.shape[0], 1), np.float32)], 1)
        problem = RidgeProblem(F[keep], targets[keep])
        k = min(100, held.size)
        best, best_l2 = -1.0, grid[0]
        for l2 in grid:
            items = problem.solve(l2).predict(F[held])
            ranked_ids = topk(u, items, k, metric="dot").ids
            score = ndcg_at_k(ranked_ids, target[users], k)
            if score > best:
                best, best_l2 = score, l2
        return best_l2

    def _write_item_vectors(self, cols: np.ndarray, rows: np.ndarray) -> None:
        """Set the item vectors (rows of `_scoring_items`: [W_j, B_j or V_j, b_j]) of the
        items `cols` to `rows` in the network's weights. B_j may cover fewer items than B has
        rows (the encoder predicts it over the items B was fit on): the rest is zero."""
        torch = self._torch
        net = self.net_
        h = net.out.weight.shape[1]
        idx = torch.from_numpy(np.asarray(cols, np.int64)).to(self._dev)
        r = torch.from_numpy(np.ascontiguousarray(rows, np.float32)).to(self._dev)
        with torch.no_grad():
            net.out.weight[idx] = r[:, :h]
            net.out.bias[idx] = r[:, -1]
            if net.full:  # B_j over the items it was predicted for; later rows stay zero
                b_part = r[:, h:-1]
                net.item_item[:, idx] = 0.0
                net.item_item[: b_part.shape[1], idx] = b_part.T
            elif net.rank:
                net.v[idx] = r[:, h : h + net.rank]
        self._drop_inference_caches()

    def add_items(self, item_features: Any) -> np.ndarray:
        """New items with no interactions, their vectors from their features.

        The model must have been fit with `item_features` (same columns). The new items get
        the next ids, n_items_ .. n_items_ + m - 1; `recommend`, `similar_items`, `scores` and
        `explain` then cover them. Histories passed afterwards have n_items_ columns; an
        added item in a history is never recommended back (filter_seen) but does not shape
        the user's vector (the encoder only reads the items it was trained on) until the
        model is fit again.

        Returns
        -------
        numpy.ndarray
            The new items' ids (int64).
        """
        self._ensure_inference()
        enc = getattr(self, "feature_encoder_", None)
        if enc is None:
            raise ValueError(
                "add_items needs a feature encoder: fit the model with item_features= first"
            )
        F = check_item_features(item_features, None)
        if F.shape[1] != enc.n_features:
            raise ValueError(
                f"item_features has {F.shape[1]} columns but the model was fit on "
                f"{enc.n_features} features"
            )
        n_old, n_new = self.n_items_, F.shape[0]
        if n_new == 0:
            return np.empty(0, np.int64)
        self.net_ = self._grown_net(n_old + n_new)
        self.n_items_ = n_old + n_new
        new = np.arange(n_old, n_old + n_new, dtype=np.int64)
        self._write_item_vectors(new, enc.predict(F))
        return new

    def _grown_net(self, n_items: int) -> Any:
        """The network for n_items items holding the current weights; the added items' rows
        of the input layer and of the item-item part are zero (they shape no user vector)."""
        torch = self._torch
        old = self.net_
        if old.full and n_items > self.config.full_rank_max_items:
            # the item-item part stays full rank: the network's shape follows the config
            self.config = dataclasses.replace(self.config, full_rank_max_items=n_items)
        state = {}
        for name, t in old.state_dict().items():
            t = t.detach()
            grow = [
                n_items - t.shape[d] if name in _ITEM_AXES and d in _ITEM_AXES[name] else 0
                for d in range(t.dim())
            ]
            if any(grow):
                pad = torch.zeros(
                    [t.shape[d] + grow[d] for d in range(t.dim())], dtype=t.dtype, device=t.device
                )
                pad[tuple(slice(0, t.shape[d]) for d in range(t.dim()))] = t
                t = pad
            state[name] = t.contiguous()
        net = _meta_net(torch, self.config, n_items)
        net.load_state_dict(state, assign=True)
        return net.to(self._dev).eval()

    def _train(self, m: sp.csr_matrix, validation: Any, callback: Callable | None) -> None:
        torch = self._torch
        cfg = self.config
        net = self.net_
        n_users = m.shape[0]
        gen = torch.Generator().manual_seed(cfg.random_state)
        # lambda ||w||^2 on the total objective = (2 lambda / n_users) decay on the mean loss
        lin = [p for n, p in net.named_parameters() if n in ("u", "v")]
        deep_w = [p for n, p in net.named_parameters() if n not in ("u", "v") and p.ndim == 2]
        biases = [p for n, p in net.named_parameters() if p.ndim == 1]
        groups = [
            {"params": deep_w, "weight_decay": 2 * cfg.weight_decay / n_users},
            {"params": biases, "weight_decay": 0.0},
        ]
        if lin:
            groups.append({"params": lin, "weight_decay": 2 * cfg.linear_l2 / n_users})
        if net.full:
            self._fit_item_item(m, validation)
        opt = torch.optim.Adam(groups, lr=cfg.lr)
        from tqdm.auto import tqdm

        bar = tqdm(
            range(cfg.epochs),
            disable=not self.verbose,
            desc=f"AutoEncoder[{cfg.variant}]",
            unit="epoch",
        )
        self.history_ = []
        best = -math.inf
        best_state = None
        self.best_epoch_ = None
        step = 0
        t0 = time.perf_counter()
        for epoch in bar:
            net.train()
            order = torch.randperm(n_users, generator=gen).numpy()
            total, count = 0.0, 0
            for s in range(0, n_users, cfg.batch_size):
                rows = np.sort(order[s : s + cfg.batch_size])
                batch = m[rows]
                xs = self._sparse_batch(batch, train=True, gen=gen)
                target = torch.from_numpy(batch.toarray()).to(self._dev)
                logits, kl = self._forward(xs, train=True)
                if cfg.variant == "ae":
                    loss = ((torch.sigmoid(logits) - (target > 0).float()) ** 2).sum(1).mean()
                elif cfg.loss == "mse":
                    loss = ((logits - target) ** 2).sum(1).mean()
                else:
                    loss = -(torch.log_softmax(logits, 1) * target).sum(1).mean()
                if kl is not None:
                    beta = min(cfg.anneal_cap, step / cfg.anneal_steps)
                    loss = loss + beta * kl
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                total += float(loss.detach()) * len(rows)
                count += len(rows)
            logs = {"epoch": epoch, "loss": total / count, "seconds": time.perf_counter() - t0}
            if validation is not None and (
                (epoch + 1) % cfg.eval_every == 0 or epoch == cfg.epochs - 1
            ):
                net.eval()
                self._drop_inference_caches()
                ndcg = self._validation_ndcg(*validation)
                logs["ndcg@100"] = ndcg
                if ndcg > best:
                    best = ndcg
                    self.best_epoch_ = epoch
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            self.history_.append(logs)
            bar.set_postfix({k: round(v, 4) for k, v in logs.items() if k in ("loss", "ndcg@100")})
            if callback is not None and callback(self, epoch, logs) is False:
                break
        bar.close()
        if best_state is not None:
            net.load_state_dict(best_state)

    # ------------------------------------------------------------------ item-item part
    def _fit_item_item(self, m: sp.csr_matrix, validation: Any) -> None:
        """B = argmin ||X - XB||^2 + lambda ||B||^2, diag(B) = 0, by projected gradient descent.

        The objective is convex; its gradient is 2 (G B - G + lambda B) with G = X'X. Steps are
        full-batch Nesterov-accelerated gradient steps, preconditioned by the diagonal
        diag(G) + lambda (Jacobi), step 1/L with L the preconditioned Hessian's largest
        eigenvalue (power iteration); the diagonal of the gradient is zeroed so B keeps a zero
        diagonal. G B is computed as G @ B (dense, 2 n^3 flops) or as X'(X B) over chunks of
        users (4 nnz n sparse flops, counted 30x), whichever is cheaper. With validation, each lambda of
        linear_l2_grid (largest first, each warm-started from the previous solution) is
        tried and the best by validation NDCG@100 kept (`linear_l2_`).
        """
        torch = self._torch
        cfg = self.config
        dev = self._dev
        n = m.shape[1]
        chunks = []
        for s in range(0, m.shape[0], 8192):
            c = m[s : s + 8192].tocoo()
            idx = torch.from_numpy(np.vstack([c.row, c.col]).astype(np.int64))
            chunks.append(
                torch.sparse_coo_tensor(
                    idx, torch.from_numpy(c.data), c.shape, check_invariants=False
                )
                .coalesce()
                .to(dev)
            )
        # G = X'X: the co-occurrence counts (sparse product, then dense n x n)
        gram = torch.from_numpy((m.T @ m).toarray().astype(np.float32)).to(dev)
        # torch's sparse @ dense runs ~30-50x below dense GEMM speed on CPU: weigh flops so
        dense_path = 2.0 * n**3 <= 30 * 4.0 * m.nnz * n
        chunks_t = [c.t().coalesce() for c in chunks]

        def hess(b: Any) -> Any:  # G b
            if dense_path:
                return gram @ b
            out = torch.zeros_like(b)
            for c, ct in zip(chunks, chunks_t):
                out += torch.sparse.mm(ct, torch.sparse.mm(c, b))
            return out

        diag_g = gram.diagonal().clone()
        gen = torch.Generator().manual_seed(cfg.random_state)
        b = torch.zeros(n, n, device=dev)
        grid = (
            cfg.linear_l2_grid
            if (validation is not None and cfg.linear_l2_grid)
            else (cfg.linear_l2,)
        )
        best: tuple[float, Any, Any] = (-math.inf, None, None)  # (validation NDCG, lambda, B)
        for i, lam in enumerate(grid):
            pinv = 1.0 / (diag_g + lam)
            v = torch.randn(n, 4, generator=gen).to(dev)
            big = 1.0
            for _ in range(30):  # largest eigenvalue of P^-1/2 (G + lam I) P^-1/2
                w = pinv.sqrt()[:, None] * v
                w = pinv.sqrt()[:, None] * (gram @ w + lam * w)
                big = float(w.norm(dim=0).max() / v.norm(dim=0).max())
                v = w / w.norm(dim=0, keepdim=True).clamp_min(1e-30)
            big *= 1.05
            small = float((lam * pinv).min())
            q = math.sqrt(min(small / big, 1.0))
            mom = (1.0 - q) / (1.0 + q)
            y = b.clone()
            steps = cfg.linear_steps if i == 0 else max(cfg.linear_steps // 2, 1)
            for _ in range(steps):
                g = hess(y)
                g.sub_(gram).add_(y, alpha=lam).mul_(pinv[:, None])
                g.diagonal().zero_()
                nb = y.sub_(g, alpha=1.0 / big)  # y is not needed any more
                del g
                y = nb + mom * (nb - b)
                b = nb
            del y
            if len(grid) > 1:
                score = self._linear_validation_ndcg(b, *validation)
                if score > best[0]:
                    best = (score, lam, b.clone())
            else:
                best = (-math.inf, lam, b)  # one lambda: no score to compare
        self.linear_l2_ = float(best[1])
        self.net_.item_item.copy_(best[2])

    def _linear_validation_ndcg(self, b: Any, v_in: sp.csr_matrix, v_tg: sp.csr_matrix) -> float:
        torch = self._torch
        keep = np.diff(v_tg.indptr) > 0
        if not keep.any():
            return 0.0
        v_in, v_tg = v_in[keep], v_tg[keep]
        out = []
        k = min(100, b.shape[0])
        for s in range(0, v_in.shape[0], 2048):
            x = torch.from_numpy(v_in[s : s + 2048].toarray()).to(b.device)
            sc = x @ b
            sc[x > 0] = -math.inf
            out.append(torch.topk(sc, k, dim=1).indices.cpu().numpy())
        return ndcg_at_k(np.concatenate(out), v_tg, k)

    def _validation_ndcg(self, v_in: sp.csr_matrix, v_tg: sp.csr_matrix) -> float:
        keep = np.diff(v_tg.indptr) > 0
        if not keep.any():
            return 0.0
        v_in, v_tg = v_in[keep], v_tg[keep]
        ids = self.recommend(v_in, k=100).ids
        return ndcg_at_k(ids, v_tg, 100)

    # ------------------------------------------------------------------ inference
    def _drop_inference_caches(self) -> None:
        """Forget the arrays inference derives from the weights (after they change)."""
        self._cache: np.ndarray | None = None
        self._ii_cache: np.ndarray | None = None
        self._w_cache: tuple[np.ndarray, np.ndarray, list] | None = None

    def _ensure_inference(self) -> None:
        self._check_fitted()
        if getattr(self, "_torch", None) is None:
            self._torch = require_torch()

    def user_embeddings(self, X: Any, *, batch_size: int = 4096) -> np.ndarray:
        """User vectors for histories X (fold-in): [h_u, x~_u U] (see the module docstring)."""
        self._ensure_inference()
        m = as_interactions(X, n_items=self.n_items_)
        torch = self._torch
        outs = []
        with torch.no_grad():
            for s in range(0, m.shape[0], batch_size):
                xb = self._sparse_batch(m[s : s + batch_size], train=False)
                outs.append(self._user_vectors(xb).cpu().numpy())
        if outs:
            return np.concatenate(outs)
        # the width of [h_u, x~_u U] (item_embeddings() would copy every item vector)
        return np.empty((0, self._scoring_items().shape[1] - 1), np.float32)

    def _user_vectors(self, batch: Any) -> Any:
        torch = self._torch
        net = self.net_
        xs, xr = batch
        with torch.no_grad():
            mu, _ = net.encode(xs)
            h = net.hidden_of(mu)
            if net.full:
                h = torch.cat([h, xr.to_dense()], 1)
            elif net.rank:
                h = torch.cat([h, net.linear_user(xr)], 1)
        return h

    def item_embeddings(self) -> np.ndarray:
        """Item vectors [W_j, V_j] (float32, n_items x d), without the bias."""
        self._ensure_inference()
        torch = self._torch
        with torch.no_grad():
            net = self.net_
            parts = [net.out.weight]
            if net.full:
                parts.append(net.item_item.T)
            elif net.rank:
                parts.append(net.v)
            return torch.cat(parts, 1).float().cpu().numpy()

    def _scoring_items(self) -> np.ndarray:
        cache = getattr(self, "_cache", None)
        if cache is None:
            emb = self.item_embeddings()
            bias = self.net_.out.bias.detach().float().cpu().numpy()
            cache = np.ascontiguousarray(np.concatenate([emb, bias[:, None]], 1), dtype=np.float32)
            self._cache = cache
        return cache

    def _deep_scores(self, m: sp.csr_matrix, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """<h_u, W_j> + b_j for the histories m and the items [lo, hi) (all by default): the
        full-rank hybrid's dense part.

        The network's forward pass without torch: the sparse first layer with the native CSR x
        dense accumulation, the dense layers with the top-k core's packed kernel (about twice
        torch's CPU GEMM here), tanh in NumPy."""
        w_in, b_in, layers = self._dense_weights()
        norms = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel()).astype(np.float32)
        xn = sp.csr_matrix(
            sp.diags(1.0 / np.maximum(norms, np.float32(1e-12))) @ m, dtype=np.float32
        )
        h = np.repeat(b_in[None, :], m.shape[0], axis=0)
        item_item_scores(xn, w_in, h)
        threads = available_cpus()
        w_out, b_out = layers[-1]
        hi = w_out.shape[0] if hi is None else hi
        layers = [*layers[:-1], (w_out[lo:hi], b_out[:, lo:hi])]  # the range's output rows
        for w, b in layers:  # encoder and decoder layers, then the output layer
            np.tanh(h, out=h)
            nxt = np.empty((m.shape[0], w.shape[0]), np.float32)
            _native.dense_scores(h, w, nxt, num_threads=threads, bias=b)
            h = nxt
        return h

    def _dense_weights(self) -> tuple[np.ndarray, np.ndarray, list]:
        """(w_in, b_in, [(weight, bias of shape (1, out)) of each later layer]) as contiguous
        float32 arrays, cached; the layers in forward order, the output layer last."""
        cache = getattr(self, "_w_cache", None)
        if cache is None:
            net = self.net_

            def arr(t: Any) -> np.ndarray:
                return np.ascontiguousarray(t.detach().float().cpu().numpy())

            layers = [
                (arr(lin.weight), arr(lin.bias)[None, :]) for lin in [*net.enc, *net.dec, net.out]
            ]
            cache = (arr(net.w_in), arr(net.b_in), layers)
            self._w_cache = cache
        return cache

    def scores(self, X: Any) -> np.ndarray:
        """The model's full score matrix for histories X (dense; for small inputs and tests)."""
        self._ensure_inference()
        m = as_interactions(X, n_items=self.n_items_)
        if self.net_.full:
            return item_item_scores(m, self._item_item(), self._deep_scores(m))
        u = self.user_embeddings(m)
        items = self._scoring_items()
        return u @ items[:, :-1].T + items[:, -1][None, :]

    def _item_item(self) -> np.ndarray:
        cache = getattr(self, "_ii_cache", None)
        if cache is None:
            cache = np.ascontiguousarray(self.net_.item_item.float().cpu().numpy())
            self._ii_cache = cache
        return cache

    def recommend(
        self, X: Any, k: int = 10, *, filter_seen: bool = True, filter_items: Any = None
    ) -> TopK:
        """Top-k items for each row of X (a user's history, known or new).

        User vectors [h_u, x~_u U, 1] against item vectors [W_j, V_j, b_j] through
        recfast.topk(metric="dot"). The full-rank hybrid instead adds the sparse x_u B to the
        dense <h_u, W_j> + b_j block by block and selects with recfast.select_topk (same rules),
        since x_u is sparse and folding it into dense vectors would cost n_items more dimensions.
        filter_seen removes each row's items; filter_items (ids for all rows, or a sparse
        users x items matrix) removes more.
        """
        self._ensure_inference()
        return self._recommend_range(X, k, filter_seen, 0, self.n_items_, filter_items)

    def _recommend_range(
        self, X: Any, k: int, filter_seen: bool, lo: int, hi: int, filter_items: Any = None
    ) -> TopK:
        self._ensure_inference()
        k = check_k(k)
        m = as_interactions(X, n_items=self.n_items_)
        excl = exclusion_in_range(build_exclusion(m, filter_seen, filter_items), lo, hi)
        if self.net_.full:
            ii = column_range(self, self._item_item(), lo, hi)

            def deep(rows: sp.csr_matrix) -> np.ndarray:
                return self._deep_scores(rows, lo, hi)

            return with_offset(item_item_topk(m, ii, k, excl, deep), lo)
        users = self.user_embeddings(m)
        users = np.concatenate([users, np.ones((users.shape[0], 1), np.float32)], 1)
        return with_offset(dot_topk(users, self._scoring_items()[lo:hi], k, excl), lo)

    def similar_items(self, item_ids: Any, k: int = 10) -> TopK:
        """Cosine neighbours over item_embeddings(), never the item itself."""
        self._ensure_inference()
        return cosine_similar_items(self.item_embeddings(), item_ids, k)

    # ------------------------------------------------------------------ explanations
    def explain(self, history: Any, item: Any, n: int = 5) -> Explanation:
        """The items of one user's history that contributed most to `item`'s score.

        Each history item j gets two parts:

        - linear (exact): x_j * B[j, item] for the full-rank hybrid, x_j * (U_j . V_item) for
          the low-rank one, zero for the other variants. These are the linear score's own terms.
        - deep (gradient x input): x~_j * d f_item / d x~_j, where x~ = x / ||x|| is the
          normalized history the network reads and f_item the deep part's score
          <h_u, W_item> + b_item (the VAE's mean path). It is a first-order attribution, not an
          exact split: the deep contributions need not sum to f_item. The gradient is taken
          with respect to x~, not the raw x, because f is invariant to the scale of x, so
          gradient x input over the raw history always sums to zero.

        Parameters
        ----------
        history : sequence of int or scipy.sparse matrix of one row
            The user's items (distinct ids, strength 1 each), or a 1 x n_items row of strengths.
        item : int
            The item to explain, in [0, n_items_).
        n : int
            At most this many history items (>= 1).

        Returns
        -------
        Explanation
            ids, contributions (linear + deep) and both parts, largest contribution first
            (ties: lower id first).
        """
        self._ensure_inference()
        ids, x = check_history(history, self.n_items_)
        item = check_item(item, self.n_items_)
        n = check_n(n)
        return ranked(
            item,
            ids,
            self._linear_contributions(ids, x, item),
            self._deep_attribution(ids, x, item),
            n,
        )

    def _linear_contributions(self, ids: np.ndarray, x: np.ndarray, item: int) -> np.ndarray:
        net = self.net_
        if net.full:
            return x * self._item_item()[ids, item]
        if net.rank:
            torch = self._torch
            with torch.no_grad():
                uv = (net.u[torch.from_numpy(ids).to(self._dev)] @ net.v[item]).float()
            return x * uv.cpu().numpy()
        return np.zeros(ids.size, np.float32)

    def _deep_attribution(self, ids: np.ndarray, x: np.ndarray, item: int) -> np.ndarray:
        if ids.size == 0:
            return np.zeros(0, np.float32)
        torch = self._torch
        net = self.net_
        xn = x / max(float(np.sqrt(np.dot(x, x))), 1e-12)
        dense = torch.zeros(1, self.n_items_, device=self._dev)
        cols = torch.from_numpy(ids).to(self._dev)
        dense[0, cols] = torch.from_numpy(xn.astype(np.float32)).to(self._dev)
        dense.requires_grad_(True)
        with torch.enable_grad():
            mu, _ = net.encode(dense)
            f = net.out(net.hidden_of(mu))[0, item]
            (grad,) = torch.autograd.grad(f, dense)
        return (grad[0, cols] * dense[0, cols]).detach().float().cpu().numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Config and weights in one file (torch.save), written atomically."""
        self._ensure_inference()
        torch = self._torch
        cfg = dataclasses.asdict(self.config)
        cfg["hidden"] = list(cfg["hidden"])
        cfg["linear_l2_grid"] = list(cfg["linear_l2_grid"])
        state = {k: v.detach().cpu() for k, v in self.net_.state_dict().items()}
        payload = {
            "model_type": "AutoEncoder",
            "format_version": FORMAT_VERSION,
            "config": cfg,
            "n_items": self.n_items_,
            "state_dict": state,
        }
        enc = getattr(self, "feature_encoder_", None)
        if enc is not None:
            payload["feature_encoder"] = {
                "weight": torch.from_numpy(enc.weight.copy()),
                "bias": torch.from_numpy(enc.bias.copy()),
                "l2": float(enc.l2),
            }
        atomic_write(path, lambda f: torch.save(payload, f))

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str = "cpu") -> AutoEncoder:
        """A saved AutoEncoder (loaded with weights_only=True) on `device`.

        The file's checksums, its config (validated as the constructor does) and the shape of
        every weight against that config are checked before the network is built, so a damaged
        or altered file is a ValueError naming it and allocates no more than the file holds.
        """
        torch = require_torch()
        dev = _resolve_device(device, torch)
        p, zf = open_model_zip(path)
        with zf:
            try:
                # torch's reader does not check the CRCs: flipped bits would load silently
                bad = zf.testzip()
            except MemoryError:
                raise
            except Exception as exc:  # OSError too: a damaged offset makes zipfile seek before 0
                raise damaged(p, exc) from None
        if bad is not None:
            raise damaged(p, ValueError(f"bad CRC-32 for {bad!r}"))
        try:
            payload = torch.load(p, map_location="cpu", weights_only=True)
        except (OSError, MemoryError):
            raise
        except Exception as exc:  # RuntimeError, pickle.UnpicklingError, EOFError, ...
            raise damaged(p, exc) from None
        cfg, n_items, state = _checked_payload(payload, p)
        try:
            model = cls(**cfg, device=device, verbose=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{p}: bad config ({exc}); damaged model file") from None
        net = _meta_net(torch, model.config, n_items)  # shapes only: allocates nothing
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        if set(expected) != set(state):
            missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
            raise ValueError(
                f"{p}: the weights do not match the config (missing {missing}, "
                f"unexpected {extra}); damaged model file"
            )
        weights = {}
        for name, shape in expected.items():
            t = state[name]
            if tuple(t.shape) != shape:
                raise ValueError(
                    f"{p}: weight {name!r} has shape {tuple(t.shape)} but the "
                    f"config ({n_items} items, variant {model.config.variant!r}) "
                    f"makes it {shape}; damaged model file"
                )
            if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
                raise ValueError(
                    f"{p}: weight {name!r} does not hold finite floats; damaged model file"
                )
            weights[name] = t.detach().to(torch.float32).contiguous()
        net.load_state_dict(weights, assign=True)
        model._torch = torch
        model._dev = dev
        model.n_items_ = n_items
        model.net_ = net.to(dev).eval()
        model._drop_inference_caches()
        model.feature_encoder_ = _checked_encoder(payload.get("feature_encoder"), net, p)
        return model


_CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(AutoEncoderConfig))


def _checked_payload(payload: Any, path: str) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """(config kwargs, n_items, state_dict) of a loaded AutoEncoder file, their types checked."""
    if not isinstance(payload, dict) or payload.get("model_type") != "AutoEncoder":
        raise ValueError(f"{path} does not hold an AutoEncoder")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format version {payload.get('format_version')!r}")
    cfg, n_items, state = payload.get("config"), payload.get("n_items"), payload.get("state_dict")
    if not isinstance(cfg, dict) or not all(isinstance(k, str) for k in cfg):
        raise ValueError(f"{path}: the file has no config; damaged model file")
    unknown = sorted(set(cfg) - _CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"{path}: unknown config settings {unknown}; damaged model file")
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise ValueError(
            f"{path}: n_items must be a positive int, got {n_items!r}; damaged model file"
        )
    torch = require_torch()
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"{path}: the file has no state_dict of tensors; damaged model file")
    return dict(cfg), n_items, state


def _checked_encoder(saved: Any, net: Any, path: str) -> FeatureEncoder | None:
    """The saved feature encoder, its shapes checked against the network: it predicts rows of
    [W_j, B_j or V_j, b_j] (B_j over the items B was fit on, at most all of them now)."""
    if saved is None:
        return None
    torch = require_torch()
    if not (
        isinstance(saved, dict)
        and isinstance(saved.get("weight"), torch.Tensor)
        and isinstance(saved.get("bias"), torch.Tensor)
        and isinstance(saved.get("l2"), float)
    ):
        raise ValueError(
            f"{path}: the feature encoder is not (weight, bias, l2); damaged model file"
        )
    w, b = saved["weight"], saved["bias"]
    h = int(net.out.weight.shape[1])
    if net.full:
        ok = w.dim() == 2 and h + 1 < w.shape[1] <= h + int(net.item_item.shape[0]) + 1
    else:
        ok = w.dim() == 2 and w.shape[1] == h + int(net.rank) + 1
    if not (ok and b.shape == (w.shape[1],) and 1 <= w.shape[0] <= MAX_FEATURES):
        raise ValueError(
            f"{path}: feature encoder of shape {tuple(w.shape)} does not fit the network; "
            f"damaged model file"
        )
    for t in (w, b):
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"{path}: the feature encoder is not finite floats; damaged model file"
            )
    return FeatureEncoder(
        w.to(torch.float32).numpy().copy(), b.to(torch.float32).numpy().copy(), saved["l2"]
    )


def _meta_net(torch: Any, cfg: AutoEncoderConfig, n_items: int) -> Any:
    """The network for `cfg` and `n_items` on torch's meta device: shapes, no memory."""
    with torch.device("meta"):
        return _build_net(torch, cfg, n_items)


def weight_count(config: AutoEncoderConfig, n_items: int) -> int:
    """Floats in the network's weights and buffers for `n_items` items, without allocating them."""
    net = _meta_net(require_torch(), config, n_items)
    return sum(int(t.numel()) for t in net.state_dict().values())
