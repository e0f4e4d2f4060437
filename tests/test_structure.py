"""House rules the layout must keep (docs/architecture.md): modules stay small enough to hold
one concept, and no module reaches into another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src" / "vpmu").rglob("*.py"))
#: The model cores mirror one kernel file or one SDM chapter each and may stay whole.
MODEL_CORES = {"arch.py", "kvm.py"}
MAX_LINES = 660


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size(path: Path) -> None:
    if path.name in MODEL_CORES:
        return
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines"


@pytest.mark.parametrize("path", SOURCES + sorted((ROOT / "tests").glob("*.py"))
                         + sorted((ROOT / "benchmarks").glob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vpmu"):
            private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
            assert not private, f"line {node.lineno}: imports private {private} from {node.module}"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("vpmu",):
            assert not node.attr.startswith("_"), f"line {node.lineno}: vpmu.{node.attr}"
