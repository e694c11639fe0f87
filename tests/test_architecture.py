"""The package's layers (docs/architecture.md): only the gateways import the compiled modules,
and no module imports one of a higher layer. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "recfast"

# Lowest first. A module may import modules of its own layer or lower ones.
LAYERS: list[set[str]] = [
    {"_types", "_io", "_exclusion", "_inputs"},  # foundation: results, files, argument checks
    {"_native", "_cuda_backend"},  # the gateways to the compiled modules
    {"topk", "reference", "metrics"},  # the top-k contract, its oracle, the metrics
    {"index", "data"},  # ItemIndex; interactions, readers, splits
    {"models"},  # recommenders built on the above
    {
        "cli",
        "cli_distributed",
        "bench",
        "distributed",
        "__main__",
        "",
    },  # applications ("" = the package root)
]
GATEWAYS = {"_core": "_native", "_cuda": "_cuda_backend"}


def layer_of(top: str) -> int:
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"recfast.{top} is in no layer of docs/architecture.md: add it there")


def module_parts(rel: Path) -> tuple[list[str], list[str]]:
    """(the module's name parts under recfast, its package's parts) for a path under recfast/."""
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        return parts[:-1], parts[:-1]
    return parts, parts[:-1]


def imported(rel: Path, source: str) -> list[tuple[int, list[str]]]:
    """(line, name parts under recfast) of every recfast module a file imports."""
    _, pkg = module_parts(rel)
    out = []
    for node in ast.walk(ast.parse(source, str(rel))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "recfast":
                target = node.module.split(".")[1:]
            else:
                continue
            if node.module is None or not target:  # `from . import x`, `from recfast import x`
                out += [(node.lineno, target + [a.name]) for a in node.names]
            else:
                out.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            out += [
                (node.lineno, a.name.split(".")[1:])
                for a in node.names
                if a.name.split(".")[0] == "recfast"
            ]
    return out


def violations(rel: Path, source: str) -> list[str]:
    """What breaks the layering in one file of the package (empty when nothing does)."""
    mod, _ = module_parts(rel)
    own = mod[0] if mod else ""
    known = set().union(*LAYERS)
    out = []
    for line, target in imported(rel, source):
        where = f"recfast/{rel}:{line}"
        top = target[0] if target else ""
        if top in GATEWAYS:
            if own != GATEWAYS[top]:
                out.append(f"{where} imports {top}; only {GATEWAYS[top]} may")
            continue
        if top not in known:
            top = ""  # `from recfast import ItemIndex`: a name the package root re-exports
        if own == "" or top == own:
            continue  # the root re-exports everything; a subpackage imports its own modules
        if layer_of(top) > layer_of(own):
            out.append(
                f"{where}: recfast.{own} (layer {layer_of(own)}) imports "
                f"recfast.{top or '(the package root)'} (layer {layer_of(top)}), a higher layer"
            )
    return out


FILES = sorted(p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("rel", FILES, ids=str)
def test_imports_follow_the_layers(rel: Path) -> None:
    assert violations(rel, (PACKAGE / rel).read_text()) == []


def test_the_check_sees_each_kind_of_breach() -> None:
    """Lazy, relative and root imports of a higher layer, and a gateway bypass, are caught."""
    lazy = "def f():\n    from ..models import EASE\n"
    assert "a higher layer" in violations(Path("index/item_index.py"), lazy)[0]
    assert "higher layer" in violations(Path("topk.py"), "from recfast import ItemIndex\n")[0]
    assert "only _native" in violations(Path("topk.py"), "from . import _core\n")[0]
    assert "only _native" in violations(Path("models/ease.py"), "import recfast._core\n")[0]
    assert violations(Path("models/ease.py"), "from .._inputs import check_k\n") == []
    with pytest.raises(AssertionError, match="in no layer"):
        violations(Path("new_module.py"), "from . import topk\n")
