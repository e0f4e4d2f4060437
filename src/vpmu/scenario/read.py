"""Reading scenarios: a file (at most `safe_yaml.MAX_BYTES`, UTF-8), a built-in by name, or
text; parsed by `vpmu.scenario.safe_yaml`, validated by `vpmu.scenario.load`."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from vpmu.errors import VpmuError, clean, shown
from vpmu.scenario import safe_yaml
from vpmu.scenario.load import scenario_from_data
from vpmu.scenario.model import Scenario, ScenarioError


def parse_scenario(text: str | bytes, source: str = "<memory>") -> Scenario:
    """A scenario from its text (bytes: a file's, decoded as UTF-8 by `safe_yaml.decode`)."""
    with safe_yaml.no_gc():  # many small new objects, no cycles: collecting them is wasted work
        try:
            doc = safe_yaml.parse(safe_yaml.decode(text) if isinstance(text, bytes) else text)
        except safe_yaml.YamlError as e:
            raise ScenarioError(clean(source), e.line, "<yaml>", e.message) from None
        return scenario_from_data(doc, clean(source))


def builtin_names() -> list[str]:
    root = importlib.resources.files("vpmu") / "scenarios"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_scenario(ref: str) -> Scenario:
    """A scenario file path, or the name of a built-in scenario."""
    data, path = None, Path(ref)
    try:
        if path.suffix in (".yaml", ".yml") or path.exists():
            with path.open("rb") as f:
                data = f.read(safe_yaml.MAX_BYTES + 1)
    except (OSError, ValueError) as e:  # also a name too long for the file system, a NUL byte
        raise VpmuError(f"cannot read scenario {shown(ref)}: {getattr(e, 'strerror', None) or e}") from None
    if data is not None:
        return parse_scenario(data, ref)
    if ref in builtin_names():
        text = (importlib.resources.files("vpmu") / "scenarios" / f"{ref}.yaml").read_text(encoding="utf-8")
        return parse_scenario(text, f"builtin:{ref}")
    raise VpmuError(f"no scenario file or built-in scenario named {shown(ref)} (built-ins: "
                    f"{', '.join(builtin_names())})")
