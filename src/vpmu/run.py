"""Running the same actions through both machines: the one operation vpmu exists for.

`start_machines` builds the architectural reference and the KVM world from one description,
sharing the initial LVTPC (the world's: a Linux guest's unmasked NMI by default), so that
scenarios, conformance, the explorer and `vpmu check` all start both sides alike.
"""

from __future__ import annotations

from vpmu.config import PmuConfig
from vpmu.reference import ReferenceMachine
from vpmu.world import World, WorldOptions


def start_machines(cfg: PmuConfig, era: str, design: str | type | None = None,
                   options: WorldOptions | None = None) -> tuple[ReferenceMachine, World]:
    """A fresh reference and KVM world for `cfg`, era `era` and `design` (None: the era's)."""
    wopts = options or WorldOptions()
    return ReferenceMachine(cfg, lvtpc=wopts.lvtpc), World(cfg, era, design, wopts)
