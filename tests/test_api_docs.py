"""Every public name (the `__all__` of recfast and its public modules) has an entry in the API
reference under docs/api/, so a new function cannot ship undocumented."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "docs" / "api"
MODULES = ["recfast", "recfast.models", "recfast.data", "recfast.metrics", "recfast.distributed"]
# Names documented under another path: `::: recfast.topk.topk` (the function shares its name
# with its module), and the package root's members listed in one `members: [...]` block.
NOT_DOCUMENTED_HERE = {"recfast.__version__", "recfast.distributed.require_ray"}


def documented() -> set[str]:
    text = "\n".join(p.read_text() for p in sorted(API.glob("*.md")))
    names = set(re.findall(r"^::: ([\w.]+)", text, re.M))
    for block in re.findall(r"^::: (recfast)\n(?:\s+.*\n)*?\s+members: \[([^\]]*)\]", text, re.M):
        names |= {f"{block[0]}.{m.strip()}" for m in block[1].split(",")}
    if "recfast.topk.topk" in names:
        names.add("recfast.topk")
    return names


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_is_in_the_api_reference(module: str) -> None:
    mod = importlib.import_module(module)
    have = documented()
    missing = [
        f"{module}.{name}"
        for name in mod.__all__
        if f"{module}.{name}" not in have
        and f"{module}.{name}" not in NOT_DOCUMENTED_HERE
        # a name re-exported by the root and documented under its defining module
        and not (module == "recfast" and f"recfast.{name}" in have)
    ]
    assert not missing, f"add these to docs/api/*.md: {missing}"


def test_the_reader_of_the_reference_sees_entries() -> None:
    have = documented()
    assert {"recfast.topk", "recfast.ItemIndex", "recfast.select_topk"} <= have
