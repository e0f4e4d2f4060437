"""House rules the layout must keep (docs/architecture.md): modules stay small enough to hold
one concept, no module reaches into another module's private names, and every import goes
down the layers (the model core never imports the run layer, the explorer or the front ends;
the reference, the KVM model and the checker never import one another)."""

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


#: The layers of docs/architecture.md, bottom up, and the module each module belongs to.
LAYER_OF = {
    **dict.fromkeys(["errors", "config", "msrs", "events", "insns", "filter", "pmc_map", "actions",
                     "assumptions", "trace"], "vocabulary"),
    **dict.fromkeys(["arch", "reference"], "reference"),
    **dict.fromkeys(["host", "lapic", "eras", "designs", "backing", "kvm", "kvm_msr", "world",
                     "kernel_source", "kernel_design"], "kvm-model"),
    **dict.fromkeys(["divergence", "tolerances", "timeline", "checker"], "checker"),
    **dict.fromkeys(["run", "scenario", "outputs"], "run"),
    "explore": "explorer",
    **dict.fromkeys(["conformance", "check", "report", "plot", "cli"], "front-end"),
}
#: Which layers a layer may import (its own always). The reference, the KVM model and the
#: checker stand side by side on the vocabulary: two independent oracles and a pure comparison
#: of what they observed.
MAY_IMPORT = {
    "vocabulary": set(),
    "reference": {"vocabulary"},
    "kvm-model": {"vocabulary"},
    "checker": {"vocabulary"},
    "run": {"vocabulary", "reference", "kvm-model", "checker"},
    "explorer": {"vocabulary", "reference", "kvm-model", "checker", "run"},
    "front-end": {"vocabulary", "reference", "kvm-model", "checker", "run", "explorer"},
}


def _module_name(path: Path) -> str:
    """`vpmu.explore.space` for src/vpmu/explore/space.py, `vpmu.explore` for its __init__."""
    parts = path.relative_to(ROOT / "src").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    """The layer of `vpmu.X...` by its top-level name X (a subpackage is one layer); None for `vpmu`."""
    top = module.split(".")[1] if module.count(".") else ""
    return LAYER_OF.get(top) if top else None


def _imported_modules(module: str, source: str, is_package: bool) -> list[tuple[int, str]]:
    """Every vpmu module `source` (the text of `module`) imports, at any depth (TYPE_CHECKING and
    function-local imports count too: they are dependencies all the same), as (line, module name)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("vpmu")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if not base.startswith("vpmu"):
                continue
            # `from vpmu import actions` imports the module vpmu.actions, not the package.
            found += [(node.lineno, f"{base}.{a.name}" if base == "vpmu" else base) for a in node.names]
    return found


def layering_violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """The imports of `module` that docs/architecture.md's layering forbids."""
    here = _layer(module)
    if here is None:
        return []
    bad = []
    for line, imported in _imported_modules(module, source, is_package):
        there = _layer(imported)
        if there is None or (there != here and there not in MAY_IMPORT[here]):
            bad.append(f"line {line}: {here} module {module} imports {imported} ({there or 'no layer'})")
    return bad


def test_every_module_has_a_layer_and_the_architecture_doc_names_it() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for path in SOURCES:
        module = _module_name(path)
        if module == "vpmu":
            continue
        assert _layer(module), f"{module} is in no layer of LAYER_OF (and docs/architecture.md)"
        short = module.removeprefix("vpmu.")
        leaf = short.rpartition(".")[2]
        assert f"`{short}`" in doc or f"`{leaf}`" in doc, f"docs/architecture.md does not name {short}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert layering_violations(_module_name(path), source, path.name == "__init__.py") == []


@pytest.mark.parametrize(("module", "source", "allowed"), [
    ("vpmu.kvm", "from vpmu.reference import ReferenceMachine", False),   # the two oracles stay apart
    ("vpmu.arch", "if TYPE_CHECKING:\n    from vpmu.kvm import KvmPmc", False),
    ("vpmu.checker", "from vpmu import world", False),                    # the checker sees observations only
    ("vpmu.world", "def f():\n    import vpmu.run", False),               # the core never reaches up
    ("vpmu.explore.space", "from ..cli import main", False),
    ("vpmu.explore.space", "from .judge import Node", True),
    ("vpmu.run", "from vpmu import reference, world", True),
    ("vpmu.cli", "from vpmu.explore import explore", True),
])
def test_the_layering_rule_reads_every_import_form(module: str, source: str, allowed: bool) -> None:
    assert (layering_violations(module, source) == []) is allowed
