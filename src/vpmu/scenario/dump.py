"""Scenario data -> YAML text: the inverse of `vpmu.scenario.load` (without expects), used to save
the explorer's counterexamples as files `vpmu run` replays (docs/scenario-format.md)."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarint import HexInt

from vpmu import actions as A
from vpmu import msrs
from vpmu.config import PRESETS, PmuConfig
from vpmu.tolerances import CheckerOptions


def action_to_step(action: A.Action | A.EmulatedItem) -> Any:
    """One action as a scenario step, in the shortest form the loader accepts (fields at their
    default are left out, MSRs by name, values in hex)."""
    if isinstance(action, A.Emulate | A.Batch):
        items = CommentedSeq()
        for item in action.items:
            step = action_to_step(item)
            if isinstance(step, dict):
                step = CommentedMap(step)
                step.fa.set_flow_style()
            items.append(step)
        items.fa.set_flow_style()
        return {action.KIND: items}
    args = CommentedMap()
    for f in dataclasses.fields(action):
        value = getattr(action, f.name)
        if value == f.default:
            continue
        if f.name == "msr":
            value = msrs.msr_name(value)
        elif f.name in ("value", "ecx", "fixed_counter_bitmap") and value > 9:
            value = HexInt(value)
        elif f.name == "events":
            value = [HexInt(e) for e in value]
        args[f.name] = value
    if not args:
        return action.KIND
    if isinstance(action, A.Native) and list(args) == ["count"]:
        return {action.KIND: action.count}
    args.fa.set_flow_style()
    return {action.KIND: args}


def dump_scenario(name: str, description: str, cpu: PmuConfig, kvm: str, design: str | None,
                  checker: CheckerOptions, actions: Sequence[A.Action],
                  world: Mapping[str, Any] | None = None) -> str:
    """A scenario file that `vpmu run` replays: the inverse of `parse_scenario` (without
    expects). Only checker options that differ from the defaults are written, then the world
    options `world` (`vpmu.world.WorldOptions` fields) as the file gave them."""
    cpu_node: Any
    base = cpu.name if cpu.name in PRESETS else None
    init = {f.name: getattr(cpu, f.name) for f in dataclasses.fields(cpu) if f.init and f.name != "name"}
    if base is not None:
        ref = {f: getattr(PRESETS[base], f) for f in init}
        diff = {k: v for k, v in init.items() if v != ref[k]}
        cpu_node = {"preset": base, **diff} if diff else base
    else:
        cpu_node = init
    doc: dict[str, Any] = {"name": name, "description": description, "cpu": cpu_node, "kvm": kvm}
    if design is not None:
        doc["design"] = design
    defaults = CheckerOptions().to_dict()
    changed = {k: v for k, v in checker.to_dict().items() if v != defaults[k]}
    changed.update(world or {})
    if changed:
        doc["options"] = changed
    doc["steps"] = [action_to_step(a) for a in actions]
    y = YAML(typ="rt")
    y.width = 100
    y.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()

