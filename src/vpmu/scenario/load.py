"""YAML scenario files -> `Scenario` (docs/scenario-format.md): the validating loader.

Loading uses `vpmu.scenario.safe_yaml` (libyaml's parser, plain data with line numbers; it
never constructs Python objects and refuses hostile input). Every validation error names the
file, the line and the field. Nothing is imported or executed while loading; a `design:`
reference to user code is loaded only when the command line names it too (`vpmu.run.execute`).
Counter and MSR knowledge comes from `vpmu.pmc_map`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

from vpmu import actions as A
from vpmu import msrs
from vpmu.arch import LVTPC_WRITABLE
from vpmu.config import FIXED_BASE, PRESETS, PmuConfig, config_from_mapping, preset
from vpmu.designs import DESIGNS
from vpmu.divergence import KINDS, parse_divergence_label
from vpmu.eras import ERAS
from vpmu.errors import VpmuError, shown
from vpmu.insns import INSNS
from vpmu.pmc_map import U64, counter_name, msr_write_value
from vpmu.scenario.expr import NAME_RE, Expr, ExprError
from vpmu.scenario.model import (
    COMPARISONS,
    JUDGES,
    Computed,
    Condition,
    Conformance,
    ConformanceSource,
    EraRecord,
    Expect,
    Operand,
    Save,
    Scenario,
    ScenarioError,
)
from vpmu.scenario.safe_yaml import YDict
from vpmu.tolerances import CheckerOptions, options_from_mapping
from vpmu.world import WorldOptions

DEFAULT_ERA = "6.8"
#: The most counter wraps a scenario's native runs may ask for (`_Loader.bound_wraps`).
MAX_SCENARIO_WRAPS = 4096


_TOP_KEYS = ("name", "description", "cpu", "kvm", "design", "judge", "options", "before_run", "steps",
             "conformance")
_NO_ARG_KINDS = ("cpuid", "hlt", "host_pmi", "save_restore", "clear_filter", "insn", "perf_fail")
_ITEM_KINDS = ("insn", "wrmsr", "rdmsr", "rdpmc")
#: Step kinds of the `before_run:` phase: userspace set-up before the first KVM_RUN.
_BEFORE_RUN_KINDS = ("set_cpuid", "set_filter", "clear_filter", "host_wrmsr", "host_rdmsr", "perf_fail")
#: Read steps whose result `save: NAME` keeps; writes whose `value` may be computed.
_SAVING_KINDS = ("rdmsr", "rdpmc", "host_rdmsr")
_COMPUTED_KINDS = ("wrmsr", "host_wrmsr")
_EXPECT_KEYS = ("counters", "global_status", "pmis", "fault", "result", "lvtpc", "insn", "any_of")
_CONFORMANCE_KEYS = ("source", "asserts", "tolerance", "eras")
_SOURCE_KEYS = ("suite", "repo", "file", "function", "version", "adapted")
_SUITES = ("kvm-unit-tests", "kvm-selftests")
_TOLERANCES = ("exact", "at-least", "at-most", "range", "nonzero", "either")
_ERA_KEYS = ("expected", "divergences", "expects", "reason", "spec")
#: Where an expected failure's `spec` may point: docs/facts/kvm-vpmu.md §n or docs/facts/x86-pmu.md A.n
#: (whose former name, architecture-and-peers.md, is still understood).
_SPEC_REF = re.compile(r"kvm-vpmu\.md §\d|(x86-pmu|architecture-and-peers)\.md A\.\d")
_WORLD_FIELDS = {f.name: f for f in dataclasses.fields(WorldOptions)}


class _Loader:
    def __init__(self, source: str) -> None:
        self.source = source
        self.cfg: PmuConfig | None = None
        self.expect_ids: dict[str, int] = {}
        self.saves: list[Save] = []
        self.computed: list[Computed] = []
        self.positions: list[tuple[str, int]] = []  # each action's step (`steps[i]`) and line
        self.wraps, self.narrowest = 0, 64
        self.seen: dict[Any, A.Action] = {}

    def err(self, line: int | None, fld: str, reason: str) -> ScenarioError:
        return ScenarioError(self.source, line, fld, reason)

    @staticmethod
    def key_line(node: Any, key: Any, default: int | None) -> int | None:
        lines = getattr(node, "lines", None)  # safe_yaml's YDict; plain dicts (built in code) have none
        return lines[key] + 1 if type(lines) is dict and key in lines else default

    @staticmethod
    def item_line(node: Any, i: int, default: int | None) -> int | None:
        lines = getattr(node, "lines", None)  # safe_yaml's YList
        return lines[i] + 1 if type(lines) is list and 0 <= i < len(lines) else default

    def mapping(self, node: Any, line: int | None, fld: str) -> dict[str, Any]:
        if node is None:
            return {}
        if not isinstance(node, dict):
            raise self.err(line, fld, f"expected a mapping, not {shown(node)}")
        return node

    def integer(self, value: Any, line: int | None, fld: str, *, lo: int | None = 0,
                hi: int | None = None) -> int:
        if isinstance(value, str):
            try:
                value = int(value.replace("_", ""), 0)
            except ValueError:
                raise self.err(line, fld, f"expected an integer (decimal or 0x hex), not {shown(value)}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(line, fld, f"expected an integer, not {shown(value)}")
        out = int(value)
        if lo is not None and out < lo:
            raise self.err(line, fld, f"expected an integer >= {lo}, not {shown(out)}")
        if hi is not None and out > hi:
            raise self.err(line, fld, f"expected an integer <= {hi:#x}, not {shown(hex(out))[1:-1]}")
        return out

    def boolean(self, value: Any, line: int | None, fld: str) -> bool:
        if not isinstance(value, bool):
            raise self.err(line, fld, f"expected true or false, not {shown(value)}")
        return value

    def msr(self, value: Any, line: int | None, fld: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise self.err(line, fld, f"expected an MSR name or number, not {shown(value)}")
        try:
            return msrs.resolve_msr(value if isinstance(value, str) else int(value))
        except VpmuError as e:
            raise self.err(line, fld, str(e)) from None

    def msr_value(self, msr: int, value: Any, line: int | None, fld: str) -> int:
        """An MSR value; -N is 2^width - N for counter MSRs (`pmc_map.msr_write_value`)."""
        assert self.cfg is not None
        try:
            return msr_write_value(self.cfg, msr, self.integer(value, line, fld, lo=None, hi=U64))
        except ValueError as e:
            raise self.err(line, fld, str(e)) from None

    def counter(self, key: Any, line: int | None, fld: str) -> int:
        assert self.cfg is not None
        if isinstance(key, int) and not isinstance(key, bool):
            idx = int(key)
        elif isinstance(key, str) and key.startswith("gp") and key[2:].isdigit():
            idx = int(key[2:])
        elif isinstance(key, str) and key.startswith("fixed") and key[5:].isdigit():
            idx = FIXED_BASE + int(key[5:])
        else:
            raise self.err(line, fld, f"expected a counter like gp0 or fixed1, not {shown(key)}")
        if idx not in self.cfg.pmc_indices:
            known = ", ".join(counter_name(i) for i in self.cfg.pmc_indices) or "none"
            raise self.err(line, fld, f"{counter_name(idx)} does not exist on this CPU (counters: {known})")
        return idx

    # -- top level

    def scenario(self, doc: Any) -> Scenario:
        if not isinstance(doc, dict):
            raise self.err(1, "<document>", f"expected a mapping with keys {', '.join(_TOP_KEYS)}")
        for key in doc:
            if key not in _TOP_KEYS:
                raise self.err(self.key_line(doc, key, None), str(key),
                               f"unknown key (expected one of: {', '.join(_TOP_KEYS)})")
        for req in ("name", "cpu", "steps"):
            if req not in doc:
                raise self.err(1, req, "required key is missing")
        name = doc["name"]
        if not isinstance(name, str) or not name.strip():
            raise self.err(self.key_line(doc, "name", None), "name", "expected a non-empty string")
        desc = doc.get("description", "")
        if not isinstance(desc, str):
            raise self.err(self.key_line(doc, "description", None), "description", "expected a string")
        self.cfg = self.cpu(doc["cpu"], self.key_line(doc, "cpu", None))
        self.narrowest = min((self.cfg.width_of(p) for p in self.cfg.pmc_indices), default=64)
        kvm = doc.get("kvm", DEFAULT_ERA)
        kvm_line = self.key_line(doc, "kvm", None)
        if isinstance(kvm, float | int) and not isinstance(kvm, bool):
            raise self.err(kvm_line, "kvm", f"quote the era (kvm: \"{kvm}\"): unquoted, YAML reads a number "
                           "and 6.10 would be 6.1")
        if not isinstance(kvm, str) or kvm not in ERAS:
            raise self.err(kvm_line, "kvm", f"expected a KVM era ({', '.join(ERAS)}), not {shown(kvm)}")
        design = doc.get("design")
        design_line = self.key_line(doc, "design", None)
        if design is not None:
            design = self.design(design, design_line)
        judge = doc.get("judge", "all")
        if judge not in JUDGES:
            raise self.err(self.key_line(doc, "judge", None), "judge",
                           f"expected {' or '.join(JUDGES)}, not {shown(judge)}")
        checker, world = self.options(doc.get("options"), self.key_line(doc, "options", None))
        actions: list[A.Action] = []
        expects: list[Expect] = []
        if "before_run" in doc:
            self.steps(doc["before_run"], self.key_line(doc, "before_run", None), "before_run",
                       _BEFORE_RUN_KINDS, actions, expects)
        before_run = len(actions)
        self.steps(doc["steps"], self.key_line(doc, "steps", None), "steps",
                   _NO_ARG_KINDS + tuple(A.ACTION_TYPES), actions, expects)
        if len(actions) == before_run:
            raise self.err(self.key_line(doc, "steps", None), "steps",
                           "needs at least one action (not only expect steps)")
        conformance = None
        if "conformance" in doc:
            conformance = self.conformance(doc["conformance"], self.key_line(doc, "conformance", None), expects)
            unjudged = next((r for r in conformance.eras if r.divergences), None) if judge == "expects" else None
            if unjudged is not None:
                raise self.err(unjudged.line, f"conformance.eras.{unjudged.era}.divergences",
                               "not judged under `judge: expects`: list the failing expect steps only")
        return Scenario(name.strip(), " ".join(desc.split()), self.cfg, kvm, design, checker, world,
                        tuple(actions), tuple(expects), self.source, conformance, str(judge),
                        tuple(self.saves), tuple(self.computed), before_run, design_line,
                        tuple(self.positions), "kvm" in doc)

    def cpu(self, node: Any, line: int | None) -> PmuConfig:
        try:
            if isinstance(node, str):
                return preset(node)
            if isinstance(node, dict):
                return config_from_mapping({str(k): (int(v) if isinstance(v, int) and not isinstance(v, bool)
                                                     else v) for k, v in node.items()})
        except VpmuError as e:
            fld = f"cpu.{e.field}" if hasattr(e, "field") else "cpu"
            sub = self.key_line(node, getattr(e, "field", ""), line) if isinstance(node, dict) else line
            raise self.err(sub, fld, getattr(e, "reason", str(e))) from None
        except TypeError as e:
            raise self.err(line, "cpu", str(e)) from None
        raise self.err(line, "cpu", f"expected a preset name ({', '.join(PRESETS)}) or a mapping")

    def design(self, value: Any, line: int | None) -> str:
        if not isinstance(value, str) or not value:
            raise self.err(line, "design", "expected a design name or 'module:Class' / 'file.py:Class'")
        if value in DESIGNS:
            return value
        if ":" not in value:
            raise self.err(line, "design", f"unknown design {shown(value)} (known: {', '.join(DESIGNS)}; "
                           "or 'module:Class', 'file.py:Class', 'kernel:PATH')")
        if value.startswith("kernel:"):
            return "kernel:" + self.beside_source(value.removeprefix("kernel:"))
        where, _, cls = value.rpartition(":")
        return f"{self.beside_source(where) if where.endswith('.py') else where}:{cls}"

    def beside_source(self, path: str) -> str:
        """A relative path in a scenario file is relative to the file, not the working directory."""
        if not path or Path(path).is_absolute() or self.source == "<memory>" or self.source.startswith("builtin:"):
            return path
        return str(Path(self.source).parent / path)

    def options(self, node: Any, line: int | None) -> tuple[CheckerOptions, dict[str, Any]]:
        node = self.mapping(node, line, "options")
        checker_names = {f.name for f in dataclasses.fields(CheckerOptions)}
        checker: dict[str, Any] = {}
        world: dict[str, Any] = {}
        for key, value in node.items():
            kl = self.key_line(node, key, line)
            fld = f"options.{key}"
            if key in checker_names:
                try:
                    checker[key] = options_from_mapping({key: value}).to_dict()[key]
                except VpmuError as e:
                    raise self.err(kl, fld, str(e)) from None
            elif key in _WORLD_FIELDS:
                default = _WORLD_FIELDS[key].default
                if isinstance(default, bool):
                    world[key] = self.boolean(value, kl, fld)
                elif key == "lvtpc":
                    world[key] = self.integer(value, kl, fld, hi=0xFFFF_FFFF)
                    if world[key] & ~LVTPC_WRITABLE:
                        raise self.err(kl, fld, f"{world[key]:#x} sets bits outside the writable {LVTPC_WRITABLE:#x}")
                else:  # host_counter_width: 1..64 bits; skid: 0..64 guest steps
                    world[key] = self.integer(value, kl, fld, lo=0 if key == "skid" else 1, hi=64)
            else:
                known = sorted(checker_names | set(_WORLD_FIELDS))
                raise self.err(kl, fld, f"unknown option (known: {', '.join(known)})")
        return options_from_mapping(checker), world

    def steps(self, node: Any, line: int | None, fld: str, kinds: tuple[str, ...],
              actions: list[A.Action], expects: list[Expect]) -> None:
        """Append the actions and expect steps of the list `fld` (`steps` or `before_run`)."""
        if not isinstance(node, list) or not node:
            raise self.err(line, fld, "expected a non-empty list of steps")
        kinds = tuple(dict.fromkeys(kinds + ("expect",)))
        for i, step in enumerate(node):
            sl = self.item_line(node, i, line)
            sf = f"{fld}[{i}]"
            if fld == "before_run" and self.guest_step(step):
                raise self.err(sl, sf, "before_run holds userspace set-up only (the first guest action is the "
                               f"first KVM_RUN): one of {', '.join(_BEFORE_RUN_KINDS)}, expect")
            kind, args, al = self.split(step, sl, sf, kinds)
            if kind == "expect":
                expects.append(self.expect(args, al, f"{sf}.expect", len(actions) - 1, sl or 0))
                continue
            if kind == "insn":
                raise self.err(sl, sf, "insn is only allowed inside emulate/batch items")
            actions.append(self.action(kind, args, al, f"{sf}.{kind}", len(actions), None))
            self.positions.append((sf, sl or 0))

    @staticmethod
    def guest_step(step: Any) -> bool:
        kind = step if isinstance(step, str) else next(iter(step), None) if isinstance(step, dict) else None
        cls = A.ACTION_TYPES.get(kind) if isinstance(kind, str) else None
        return cls is not None and (issubclass(cls, A.GUEST_ACTIONS) or kind in ("insn", "host_pmi"))

    def split(self, step: Any, line: int | None, fld: str, kinds: tuple[str, ...]) -> tuple[str, Any, int | None]:
        """A step is `kind` or `{kind: args}`; returns the kind, its args and their line."""
        if isinstance(step, str):
            if step not in kinds:
                raise self.err(line, fld, f"unknown step kind {shown(step)} (expected one of: {', '.join(kinds)})")
            return step, None, line
        if isinstance(step, dict) and len(step) == 1:
            kind = next(iter(step))
            if kind not in kinds:
                raise self.err(line, fld, f"unknown step kind {shown(kind)} (expected one of: {', '.join(kinds)})")
            return str(kind), step[kind], line
        raise self.err(line, fld, "expected a step kind, or a mapping with exactly one step kind as key")

    def action(self, kind: str, args: Any, line: int | None, fld: str, step: int, item: int | None) -> A.Action:
        """One action of step `step` (item `item` of an emulate/batch step, else None); a repeat
        of a plain one (scalar arguments, no save, no computed value) is validated once."""
        key = (kind, tuple(args.items()) if isinstance(args, dict) else args) if _plain(args) else None
        out = self.seen.get(key) if key is not None else None
        if out is None:
            out = self.checked_action(kind, args, line, fld, step, item)
            if key is not None:
                self.seen[key] = out
        if isinstance(out, A.Native):  # native runs cost O(wraps): bounded per scenario
            self.wraps += max(out.totals().values()) >> self.narrowest
            if self.wraps > MAX_SCENARIO_WRAPS:
                raise self.err(line, fld, f"the native runs add up to more than {MAX_SCENARIO_WRAPS:,} wraps of a "
                               f"{self.narrowest}-bit counter (each wrap is an overflow to simulate and check)")
        return out

    def checked_action(self, kind: str, args: Any, line: int | None, fld: str, step: int,
                       item: int | None) -> A.Action:
        cls = A.ACTION_TYPES[kind]
        if kind in ("emulate", "batch"):
            if isinstance(args, dict) and set(args) == {"items"}:
                args = args["items"]
            if not isinstance(args, list) or not args:
                raise self.err(line, fld, "expected a non-empty list of items (insn, wrmsr, rdmsr, rdpmc)")
            items = []
            for j, item in enumerate(args):
                il = self.item_line(args, j, line)
                ik, ia, _ = self.split(item, il, f"{fld}[{j}]", _ITEM_KINDS)
                items.append(self.action(ik, ia, il, f"{fld}[{j}].{ik}", step, j))
            return cls(tuple(items))  # type: ignore[no-any-return]
        if kind == "native" and isinstance(args, int) and not isinstance(args, bool):
            args = {"count": args}
        if kind == "insn" and isinstance(args, str):
            args = {"name": args}
        mapping = dict(self.mapping(args, line, fld))
        if kind in _SAVING_KINDS and "save" in mapping:
            self.save(mapping.pop("save"), self.key_line(args, "save", line), f"{fld}.save", step, item)
        if kind in _COMPUTED_KINDS and self.is_expression(mapping.get("value")):
            vl = self.key_line(args, "value", line)
            expr = self.expression(mapping["value"], vl, f"{fld}.value")
            self.computed.append(Computed(step, item, expr, vl or 0))
            mapping["value"] = 0  # a placeholder: the run computes the value (vpmu.run)
        flds = _fields_of(cls)
        for key in mapping:
            if key not in flds:
                extra = ", save" if kind in _SAVING_KINDS and item is None else ""
                raise self.err(self.key_line(args, key, line), f"{fld}.{key}",
                               f"unknown field (expected: {', '.join(flds) or 'none'}{extra})")
        values: dict[str, Any] = {}
        for name, f in flds.items():
            if name not in mapping:
                if f.default is dataclasses.MISSING:
                    raise self.err(line, f"{fld}.{name}", "required field is missing")
                continue
            v = mapping[name]
            vl = self.key_line(args, name, line)
            vf = f"{fld}.{name}"
            if name == "msr":
                values[name] = self.msr(v, vl, vf)
            elif name == "value":
                values[name] = v  # converted below, once the MSR is known
            elif name in ("host_pmi",):
                if v not in ("before-handler", "after-handler"):
                    raise self.err(vl, vf, f"expected before-handler or after-handler, not {shown(v)}")
                values[name] = str(v)
            elif name == "action":
                if isinstance(v, int) and not isinstance(v, bool):
                    values[name] = self.integer(v, vl, vf, hi=0xFFFF_FFFF)  # the ioctl's raw number
                elif v in ("allow", "deny"):
                    values[name] = str(v)
                else:
                    raise self.err(vl, vf, f"expected allow, deny or the ioctl's action number, not {shown(v)}")
            elif name == "name":
                if not isinstance(v, str) or v not in INSNS:
                    raise self.err(vl, vf, f"expected an instruction name ({', '.join(sorted(INSNS))}), not {shown(v)}")
                values[name] = v
            elif name == "events":
                if not isinstance(v, list):
                    raise self.err(vl, vf, "expected a list of event codes")
                values[name] = tuple(self.integer(e, vl, vf, hi=U64) for e in v)
            elif isinstance(f.default, bool) or f.type == "bool | None":
                values[name] = self.boolean(v, vl, vf)
            elif name == "cpl":
                values[name] = self.integer(v, vl, vf, hi=3)
            elif name == "ecx":
                values[name] = self.integer(v, vl, vf, hi=0xFFFF_FFFF)  # RDPMC's ECX: 32 bits
            else:
                values[name] = self.integer(v, vl, vf, hi=U64)
        if "value" in values:
            values["value"] = self.msr_value(values["msr"], values["value"], self.key_line(args, "value", line),
                                             f"{fld}.value")
        if kind == "native" and values.get("branches", 0) > values["count"]:
            raise self.err(line, f"{fld}.branches", "expected at most `count` branches")
        try:
            return cls(**values)  # type: ignore[no-any-return]
        except VpmuError as e:
            raise self.err(line, fld, str(e)) from None

    # -- saved and computed values (docs/scenario-format.md "Saved values and computed values")

    def save(self, name: Any, line: int | None, fld: str, step: int, item: int | None) -> None:
        if item is not None:
            raise self.err(line, fld, "save is only allowed on a read step of its own, not inside emulate/batch")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise self.err(line, fld, f"expected a name like C or loop_count (letters, digits, _), not {shown(name)}")
        prev = next((s for s in self.saves if s.name == name), None)
        if prev is not None:
            raise self.err(line, fld, f"{name} is already saved at line {prev.line}")
        self.saves.append(Save(step, name, line or 0))

    @staticmethod
    def is_expression(value: Any) -> bool:
        """A string that is not an integer literal: an expression over saved names."""
        if not isinstance(value, str):
            return False
        try:
            int(value.replace("_", ""), 0)
        except ValueError:
            return True
        return False

    def expression(self, value: str, line: int | None, fld: str) -> Expr:
        try:
            expr = Expr.parse(value)
        except ExprError as e:
            raise self.err(line, fld, f"expected {e}, not {shown(value)}") from None
        known = {s.name for s in self.saves}
        missing = sorted(expr.names - known)
        saved = f"saved so far: {', '.join(sorted(known)) or 'none'}"
        if missing and str(expr) == missing[0]:
            # a lone word (`value: "yes"`): most likely not meant as a saved name at all
            raise self.err(line, fld, f"expected an integer or a name saved by an earlier read step, "
                           f"not {shown(value)} ({saved})")
        if missing:
            raise self.err(line, fld, f"{missing[0]} is not saved by an earlier read step ({saved})")
        return expr

    def operand(self, value: Any, line: int | None, fld: str, *, lo: int | None = 0) -> Operand:
        if self.is_expression(value):
            return self.expression(value, line, fld)
        return self.integer(value, line, fld, lo=lo, hi=U64)

    def expected(self, value: Any, line: int | None, fld: str, width: int | None) -> Operand | Condition:
        """An expect check's value: exact (an integer or an expression), or a mapping of
        comparisons. `width`: a counter's, where -N means 2^width - N."""

        def one(v: Any, f: str) -> Operand:
            out = self.operand(v, line, f, lo=None if width is not None else 0)
            return (1 << width) + out if isinstance(out, int) and out < 0 and width is not None else out

        if not isinstance(value, dict):
            return one(value, fld)
        if not value:
            raise self.err(line, fld, f"expected a value or comparisons ({', '.join(COMPARISONS)}, range)")
        tests: list[tuple[str, Operand]] = []
        for op, v in value.items():
            ol = self.key_line(value, op, line)
            of = f"{fld}.{op}"
            if op == "range":
                if not isinstance(v, list) or len(v) != 2:
                    got = f"a list of {len(v)} value{'s' if len(v) != 1 else ''}" if isinstance(v, list) else shown(v)
                    raise self.err(ol, of, f"expected [low, high] (both included), not {got}")
                tests += [("ge", one(v[0], of)), ("le", one(v[1], of))]
            elif op in COMPARISONS:
                tests.append((str(op), one(v, of)))
            else:
                raise self.err(ol, of, f"unknown comparison (expected: {', '.join(COMPARISONS)}, range)")
        return Condition(tuple(tests))

    def expect(self, args: Any, line: int | None, fld: str, after: int, step_line: int) -> Expect:
        ident = None
        if isinstance(args, dict) and "id" in args:
            il = self.key_line(args, "id", line)
            ident = args["id"]
            if not isinstance(ident, str) or not ident.strip() or ident != ident.strip():
                raise self.err(il, f"{fld}.id", f"expected a name without spaces around it, not {shown(ident)}")
            if ident in self.expect_ids:
                raise self.err(il, f"{fld}.id", f"id {shown(ident)} is already used at line {self.expect_ids[ident]}")
            self.expect_ids[ident] = il or 0
        return Expect(after, step_line, tuple(self.expect_checks(args, line, fld, nested=False)), ident)

    def expect_checks(self, args: Any, line: int | None, fld: str, *, nested: bool) -> list[tuple[str, Any]]:
        keys = [k for k in _EXPECT_KEYS if not (nested and k == "any_of")]
        mapping = self.mapping(args, line, fld)
        if not [k for k in mapping if nested or k != "id"]:
            raise self.err(line, fld, f"expected at least one of: {', '.join(keys)}"
                           + ("" if nested else " (and optionally id)"))
        checks: list[tuple[str, Any]] = []
        assert self.cfg is not None
        for key, v in mapping.items():
            if key == "id" and not nested:
                continue  # the step's name, read by expect()
            kl = self.key_line(mapping, key, line)
            kf = f"{fld}.{key}"
            if key == "counters":
                cm = self.mapping(v, kl, kf)
                for ck, cv in cm.items():
                    cl = self.key_line(cm, ck, kl)
                    idx = self.counter(ck, cl, f"{kf}.{ck}")
                    val = self.expected(cv, cl, f"{kf}.{ck}", self.cfg.width_of(idx))
                    checks.append((f"counter:{counter_name(idx)}", val))
            elif key == "fault":
                checks.append(("fault", self.boolean(v, kl, kf)))
            elif key in ("global_status", "pmis", "result", "lvtpc", "insn"):
                checks.append((key, self.expected(v, kl, kf, None)))
            elif key == "any_of" and not nested:
                if not isinstance(v, list) or len(v) < 2:
                    raise self.err(kl, kf, "expected a list of at least two alternatives (each a mapping of checks)")
                alts = tuple(tuple(self.expect_checks(alt, self.item_line(v, j, kl), f"{kf}[{j}]", nested=True))
                             for j, alt in enumerate(v))
                checks.append(("any_of", alts))
            else:
                allowed = keys + ([] if nested else ["id"])
                raise self.err(kl, kf, f"unknown expectation (expected: {', '.join(allowed)})")
        return checks

    # -- conformance (docs/scenario-format.md "conformance")

    def text(self, node: Any, line: int | None, fld: str) -> str:
        if not isinstance(node, str) or not node.strip():
            raise self.err(line, fld, f"expected a non-empty string, not {shown(node)}")
        return " ".join(node.split())

    def known_keys(self, node: dict[str, Any], line: int | None, fld: str, known: tuple[str, ...],
                   required: tuple[str, ...]) -> None:
        for key in node:
            if key not in known:
                raise self.err(self.key_line(node, key, line), f"{fld}.{key}",
                               f"unknown key (expected one of: {', '.join(known)})")
        for key in required:
            if key not in node:
                raise self.err(line, f"{fld}.{key}", "required key is missing")

    def conformance(self, node: Any, line: int | None, expects: list[Expect]) -> Conformance:
        fld = "conformance"
        node = self.mapping(node, line, fld)
        self.known_keys(node, line, fld, _CONFORMANCE_KEYS, _CONFORMANCE_KEYS)
        sl = self.key_line(node, "source", line)
        src = self.mapping(node["source"], sl, f"{fld}.source")
        self.known_keys(src, sl, f"{fld}.source", _SOURCE_KEYS, _SOURCE_KEYS[:-1])
        values = {k: self.text(src[k], self.key_line(src, k, sl), f"{fld}.source.{k}") for k in src}
        if values["suite"] not in _SUITES:
            raise self.err(self.key_line(src, "suite", sl), f"{fld}.source.suite",
                           f"expected one of: {', '.join(_SUITES)}, not {shown(values['suite'])}")
        source = ConformanceSource(**values)
        asserts = self.text(node["asserts"], self.key_line(node, "asserts", line), f"{fld}.asserts")
        tl = self.key_line(node, "tolerance", line)
        tol = node["tolerance"]
        tols = list(tol) if isinstance(tol, list) else [tol]
        bad = next((t for t in tols if not isinstance(t, str) or t not in _TOLERANCES), None)
        if bad is not None or not tols:
            raise self.err(tl, f"{fld}.tolerance", f"{shown(bad)} is not one of: {', '.join(_TOLERANCES)} "
                           "(one, or a list)")
        if len(set(tols)) != len(tols):
            raise self.err(tl, f"{fld}.tolerance", "lists a tolerance twice")
        el = self.key_line(node, "eras", line)
        eras_node = self.mapping(node["eras"], el, f"{fld}.eras")
        if not eras_node:
            raise self.err(el, f"{fld}.eras", "expected at least one era")
        records: dict[str, EraRecord] = {}
        for key, value in eras_node.items():
            kl = self.key_line(eras_node, key, el)
            kf = f"{fld}.eras.{key}"
            if not isinstance(key, str):
                raise self.err(kl, kf, f"quote the era ('{key}'): an unquoted 6.10 would be the number 6.1")
            if key not in ERAS:
                raise self.err(kl, kf, f"unknown KVM era (known: {', '.join(ERAS)})")
            records[key] = self.era_record(key, value, kl, kf, expects)
        ordered = tuple(records[e] for e in ERAS if e in records)
        return Conformance(source, asserts, tuple(tols), ordered)

    def era_record(self, era: str, node: Any, line: int | None, fld: str, expects: list[Expect]) -> EraRecord:
        if node == "pass":
            return EraRecord(era, "pass", line=line)
        if not isinstance(node, dict):
            raise self.err(line, fld, f"expected pass or a mapping with keys {', '.join(_ERA_KEYS)}, not {shown(node)}")
        self.known_keys(node, line, fld, _ERA_KEYS, ("expected",))
        expected = node["expected"]
        if expected not in ("pass", "fail"):
            raise self.err(self.key_line(node, "expected", line), f"{fld}.expected",
                           f"expected pass or fail, not {shown(expected)}")
        if expected == "pass":
            extra = [k for k in node if k != "expected"]
            if extra:
                raise self.err(self.key_line(node, extra[0], line), f"{fld}.{extra[0]}",
                               "only allowed with expected: fail")
            return EraRecord(era, "pass", line=line)
        for req in ("reason", "spec"):
            if req not in node:
                raise self.err(line, f"{fld}.{req}", "required key is missing (an expected failure needs its "
                               "reason and a spec reference)")
        reason = self.text(node["reason"], self.key_line(node, "reason", line), f"{fld}.reason")
        spl = self.key_line(node, "spec", line)
        spec = self.text(node["spec"], spl, f"{fld}.spec")
        if not _SPEC_REF.search(spec):
            raise self.err(spl, f"{fld}.spec", "expected a spec reference like 'kvm-vpmu.md §2.1 I8' or "
                           "'x86-pmu.md A.8' (docs/facts/)")
        labels = self.string_list(node.get("divergences", []), self.key_line(node, "divergences", line),
                                  f"{fld}.divergences")
        dl = self.key_line(node, "divergences", line)
        for label in labels:
            if parse_divergence_label(label) is None:
                raise self.err(dl, f"{fld}.divergences",
                               f"unknown divergence {shown(label)} (kinds: {', '.join(KINDS)}; "
                               "append ' (internal)' for an internal one)")
        xl = self.key_line(node, "expects", line)
        ids = self.string_list(node.get("expects", []), xl, f"{fld}.expects")
        known = {e.id for e in expects if e.id is not None}
        for ident in ids:
            if ident not in known:
                raise self.err(xl, f"{fld}.expects", f"no expect step has id {shown(ident)} "
                               f"(ids: {', '.join(sorted(known)) or 'none'})")
        if not labels and not ids:
            raise self.err(line, fld, "an expected failure needs divergences and/or expects (how the run fails)")
        return EraRecord(era, "fail", tuple(dict.fromkeys(labels)), tuple(sorted(set(ids))), reason, spec, line)

    def string_list(self, node: Any, line: int | None, fld: str) -> list[str]:
        if not isinstance(node, list) or not all(isinstance(x, str) for x in node):
            raise self.err(line, fld, f"expected a list of strings, not {shown(node)}")
        return [str(x) for x in node]


def _plain(args: Any) -> bool:
    return args is None or type(args) in (int, str) or (type(args) is YDict and "save" not in args and all(
        type(v) in (int, bool) or (type(v) is str and k != "value") for k, v in args.items()))


_fields_of = functools.cache(lambda cls: {f.name: f for f in dataclasses.fields(cls)})  # per action class


def scenario_from_data(doc: Any, source: str) -> Scenario:
    """Validate a parsed scenario document (`safe_yaml.parse`: plain data with line numbers)."""
    return _Loader(source).scenario(doc)
