"""Terminal reports with rich: the trace table, the divergence list, the demo verdict table."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vpmu import actions as A
from vpmu import msrs
from vpmu.config import PmuConfig
from vpmu.conformance import ConformanceResult
from vpmu.designs import absolute_reference, replay_command, short_name
from vpmu.pmc_map import counter_name
from vpmu.run import RunResult
from vpmu.trace import Observation

if TYPE_CHECKING:
    from vpmu.check import CheckReport, Difference
    from vpmu.explore import ExploreReport


def dumps(obj: Any) -> str:
    """Deterministic JSON: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def line_width() -> int | None:
    """The width one-line listings fit: $COLUMNS, else the terminal's; None (no limit) when
    the output is not a terminal, so that a pipe or a file gets the whole text."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        import shutil

        return shutil.get_terminal_size().columns
    return None


def fit_line(line: str, width: int | None) -> str:
    """`line` cut to `width` characters at a word boundary, ending in "..." when cut (ASCII:
    any terminal encoding can show it)."""
    if width is None or len(line) <= width:
        return line
    cut = line[: max(width - 3, 1)]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else cut).rstrip(" ,;:") + "..."


def _val(v: int) -> str:
    return f"{v:#x}" if v > 0xFFFF else str(v)


def describe_action(a: Any) -> str:
    """A short human label for an action ("WRMSR IA32_A_PMC0=0xfffffffffffe", "batch[insn insn]")."""
    if isinstance(a, A.Native):
        extra = f", {a.branches} br" if a.branches else ""
        extra += f", cpl{a.cpl}" if a.cpl else ""
        extra += ", hold_pmi" if a.hold_pmi else ""
        return f"native {a.count}{extra}"
    if isinstance(a, A.Wrmsr | A.HostWrmsr):
        who = "WRMSR" if isinstance(a, A.Wrmsr) else "SET_MSRS"
        return f"{who} {msrs.msr_name(a.msr)}={_val(a.value)}"
    if isinstance(a, A.Rdmsr | A.HostRdmsr):
        who = "RDMSR" if isinstance(a, A.Rdmsr) else "GET_MSRS"
        return f"{who} {msrs.msr_name(a.msr)}"
    if isinstance(a, A.Rdpmc):
        return f"RDPMC {a.ecx:#x}"
    if isinstance(a, A.Insn):
        return "insn(br)" if a.branch else "insn"
    if isinstance(a, A.Emulate | A.Batch):
        inner = " ".join(describe_action(i).replace("IA32_PERF_", "").replace("IA32_", "") for i in a.items)
        return f"{a.KIND}[{inner}]"
    if isinstance(a, A.Cpuid | A.Hlt):
        pmi = " (host PMI after handler)" if a.host_pmi == "after-handler" else ""
        return a.KIND.upper() + pmi
    if isinstance(a, A.SetFilter):
        return f"set_filter {a.action} {[hex(e) for e in a.events]}"
    if isinstance(a, A.PerfFail):
        return f"perf_fail {'on' if a.on else 'off'}"
    return str(a.KIND)


def short_action(a: Any) -> str:
    """`describe_action` without the MSR name prefixes, for narrow tables."""
    return describe_action(a).replace("IA32_PERF_", "").replace("IA32_", "").replace("MSR_", "")


def in_use(res: RunResult) -> list[int]:
    """Positions (in pmc_indices order) of counters that are non-zero at some step on either side."""
    idx = res.cfg.pmc_indices
    used = [n for n in range(len(idx))
            if any(o.counters[n] for o in res.ref_obs) or any(o.counters[n] for o in res.kvm_obs)]
    return used or list(range(min(1, len(idx))))


def _cells(cfg_idx: tuple[int, ...], r: Observation, k: Observation,
           used: list[int]) -> tuple[Text, Text, Text, Text]:
    counters = Text()
    for n, (idx, rv, kv) in enumerate(zip(cfg_idx, r.counters, k.counters, strict=False)):
        if n not in used:
            continue
        if counters:
            counters.append("\n")
        if rv == kv:
            counters.append(f"{counter_name(idx)} {_val(rv)}")
        else:
            counters.append(f"{counter_name(idx)} {_val(rv)} / {_val(kv)}", style="bold red")
    st_style = "" if r.global_status == k.global_status else "bold red"
    status = Text(f"{r.global_status:#x}" if r.global_status == k.global_status
                  else f"{r.global_status:#x} / {k.global_status:#x}", style=st_style)
    pm_style = "" if r.pmis == k.pmis else "bold red"
    pmis = Text(_pmis(r.pmis) if r.pmis == k.pmis else f"{_pmis(r.pmis)} / {_pmis(k.pmis)}", style=pm_style)
    reads = Text()
    for rr, kr in zip(r.results, k.results, strict=False):
        if reads:
            reads.append(" ")
        def one(x: Any) -> str:
            return "#GP" if x.fault else ("-" if x.value is None else _val(x.value))
        same = rr == kr
        reads.append(one(rr) if same else f"{one(rr)}/{one(kr)}", style="" if same else "bold red")
    return counters, status, pmis, reads


def _pmis(p: tuple[int, ...]) -> str:
    return ",".join(f"@{n}" for n in p) if p else "-"


#: The KVM notes the trace table shows: how requests, overflows and PMIs flowed.
_TRACE_NOTES = frozenset({"request", "service", "entry-cancelled", "pmi", "overflow"})


#: Below this console width the trace table uses its narrow layout (one cell per machine).
WIDE_TRACE = 150


def _design_cell(k: Observation, cfg: PmuConfig) -> str:
    """The design's per-PMC fields after a step, e.g. "gp0 c=-2 emu=2 prev=0" (counter and
    prev_counter in the counter's signed notation)."""
    rows = []
    for s in k.design:
        w = cfg.width_of(s.pmc)
        text = (f"{counter_name(s.pmc)} c={_signed(s.counter, w)} emu={s.emulated_counter} "
                f"prev={_signed(s.prev_counter, w)}")
        rows.append(text + "".join(f" {name}={_val(v)}" for name, v in s.extra))
    return "\n".join(rows)


def trace_table(res: RunResult, title: str | None = None, width: int = WIDE_TRACE) -> Table:
    """Steps as rows. Wide (>= WIDE_TRACE columns): one column per observed quantity, cells
    show `reference / KVM` where they differ (in red). Narrow: the reference's and KVM's
    observation in one compact cell each, and the design's fields, signals and divergences
    in a notes column, so that the table stays readable at 80 columns."""
    idx = res.cfg.pmc_indices
    div_steps: dict[int, list[str]] = {}
    for d in res.divergences:
        div_steps.setdefault(d.step, []).append(d.kind + ("~" if d.tolerated else ""))
    wide = width >= WIDE_TRACE
    t = Table(title=title, show_lines=not wide, header_style="bold", box=None if not wide else box.HEAVY_HEAD)
    cols = (("step", "action", "insn", "counters (ref / kvm)", "STATUS", "PMIs", "results", "design (kvm)",
             "KVM signals / log", "divergence") if wide else ("step", "action", "reference", "KVM", "notes"))
    for col in cols:
        t.add_column(col, overflow="fold")
    used = in_use(res)
    for r, k in zip(res.ref_obs, res.kvm_obs, strict=True):
        sigs = [f"{s.source}:{counter_name(s.pmc)}@{s.insn}" for s in k.signals]
        divs = div_steps.get(r.step, [])
        dtext = Text(" ".join(divs), style="bold red" if any(not x.endswith("~") for x in divs) else "yellow")
        if wide:
            counters, status, pmis, reads = _cells(idx, r, k, used)
            log = [n.text for n in k.log if n.kind in _TRACE_NOTES]
            insn = str(r.insn) if r.insn == k.insn else f"{r.insn} / {k.insn}"
            t.add_row(str(r.step), Text(describe_action(r.action)), insn, counters, status, pmis, reads,
                      Text(_design_cell(k, res.cfg)), Text("\n".join(sigs + log)), dtext)
            continue
        ref_cell, kvm_cell = _compact(res.cfg, r, used), _compact(res.cfg, k, used)
        notes = Text("\n".join(x for x in (_design_cell(k, res.cfg), " ".join(sigs)) if x))
        if divs:
            notes.append(("\n" if notes else "") + " ".join(divs), style=dtext.style)
        t.add_row(str(r.step), Text(f"{short_action(r.action)} (insn {r.insn})"), Text(ref_cell),
                  Text(kvm_cell, style="" if kvm_cell == ref_cell else "bold red"), notes)
    return t


def _divergence_title(res: RunResult) -> str:
    return "divergences (~ = tolerated" + ("" if res.judged else "; not judged: judge is expects") + ")"


def divergence_table(res: RunResult) -> Table:
    t = Table(title=_divergence_title(res), header_style="bold")
    for col in ("step", "kind", "vis", "counter", "expected", "observed", "tolerated", "explanation"):
        t.add_column(col, overflow="fold")
    for d in res.divergences:
        style = "yellow" if d.tolerated else "bold red"
        tol = f"yes ({d.relaxation})" if d.tolerated else "no"
        t.add_row(str(d.step), Text(d.kind, style=style), d.visibility, d.counter or "-",
                  Text(_show(d.expected)), Text(_show(d.observed)), tol, Text(d.message))
    return t


def _show(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return _val(v)
    return str(v)


def print_run(console: Console, res: RunResult, trace: bool = False, era_from: str = "") -> None:
    """Header, the step table (with `trace`), the divergences, failed expects and the verdict.
    `era_from` says where the era came from ("the scenario's" / "--kvm")."""
    head = Text(res.name, style="bold")
    era = f" ({era_from})" if era_from else ""
    head.append(f" on KVM {res.kvm}{era}, design {res.design}, CPU {res.cfg.name}: {res.cfg.describe()}")
    console.print(head)
    if res.description:
        console.print(Text(res.description, style="dim"))
    if res.assumptions:
        console.print(Text(f"assumes: {', '.join(res.assumptions)} (docs/kvm-model.md)", style="yellow"))
    if trace:
        console.print(trace_table(res, width=console.width))
    if res.divergences and console.width >= WIDE_TRACE:
        console.print(divergence_table(res))
    elif res.divergences:
        console.print(Text(_divergence_title(res) + ":", style="bold"))
        for d in res.divergences:
            line = Text(f"  step {d.step} ")
            line.append(d.kind + ("~" if d.tolerated else ""), style="yellow" if d.tolerated else "bold red")
            line.append(f" ({d.visibility}{', ' + d.counter if d.counter else ''}"
                        f"{', tolerated: ' + (d.relaxation or '') if d.tolerated else ''}): {d.message}")
            console.print(line)
    for e in res.expects:
        if not e.ok:
            line = Text("expect failed", style="bold red")
            line.append(f" (line {e.line}, after step {e.after}): {e.check} expected {_show(e.expected)}, "
                        f"KVM shows {_show(e.observed)}")
            console.print(line)
    n_ok = sum(e.ok for e in res.expects)
    if res.expects:
        console.print(f"expects: {n_ok}/{len(res.expects)} hold")
    style = "bold red" if res.failed else "bold green"
    console.print(Text(f"verdict: {res.verdict}", style=style))


def verdict_table(rows: Sequence[str], eras: Sequence[str], cells: dict[tuple[str, str], str]) -> Table:
    t = Table(title="vpmu demo: reference PMU vs KVM vPMU", header_style="bold")
    t.add_column("scenario")
    for e in eras:
        t.add_column(f"KVM {e}")
    for r in rows:
        out = [r]
        for e in eras:
            out.append(cells.get((r, e), "n/a"))
        t.add_row(*[Text(c, style="bold red" if c.startswith("FAIL") else ("green" if c.startswith("ok") else ""))
                    for c in out])
    return t


# --- vpmu explore ---------------------------------------------------------------------------


def _ending(stats: Any) -> str:
    """How an exhaustive search ended (docs/explorer.md "Exhaustion")."""
    if stats.stopped_by_budget:
        return (f"stopped by the time budget at depth {stats.depth_reached}, "
                f"{stats.frontier_left:,} frontier states unexplored")
    if stats.exhausted:
        return f"exhausted: no new state at depth {stats.depth_reached}"
    return f"depth-limited at {stats.depth_reached}, {stats.frontier_left:,} frontier states unexplored"


def print_explore(console: Console, report: ExploreReport, files: Sequence[str | None]) -> None:
    """Bounds, search statistics, then each shrunk counterexample with its assumptions and
    explored steps (the JSON form is `ExploreReport.to_dict`)."""
    from vpmu.explore import setup_prefix, signature
    from vpmu.tolerances import CheckerOptions

    t = report.target
    b = report.bounds
    design = t.design or "era default"
    console.print(Text.assemble(("vpmu explore", "bold"), f": KVM {t.era} ({design}) on {t.cfg.name}, "
                                f"counters {b.width} bits wide, {b.gp} GP + {b.fixed} fixed in use, depth "
                                f"{b.depth}, batch {b.batch}, seed {report.seed}"))
    defaults = CheckerOptions().to_dict()
    options = [f"{k}={v}" for k, v in t.checker_options.to_dict().items() if v != defaults[k]]
    console.print(Text(
        f"  bounds: native {','.join(map(str, b.native))}; values {','.join(map(str, b.values))}; "
        f"events {','.join(b.events)}; skid {b.skid}; assume {','.join(b.assume) or 'none'}; "
        f"checker options {' '.join(options) or 'default'}"))
    console.print(Text(f"  kinds: {','.join(b.kinds)}"))
    if report.searches:
        why = f" ({report.engine_note or report.kernel_note})" if report.engine_note or report.kernel_note else ""
        console.print(Text(f"  engine: {report.engine}{why}"))
    for s in report.searches:
        st = s.stats
        what = f"{st.sequences} sequences" if s.mode == "random" else _ending(st)
        budget = " (stopped by the time budget)" if st.stopped_by_budget and s.mode == "random" else ""
        console.print(f"  {s.mode:10} {st.states} states, {st.transitions} transitions in {st.elapsed:.2f}s "
                      f"({st.states_per_second:,.0f} states/s), {what}{budget}")
    if not report.counterexamples:
        console.print(Text("no untolerated divergence within these bounds", style="green"))
        return
    shown = len(report.counterexamples)
    cut = f" (showing {shown} of {report.causes_found}: --max-counterexamples)" if report.causes_found > shown else ""
    stopped = any(s.stats.stopped_by_budget for s in report.searches)
    shrunk = "shrunk as far as the time budget allowed" if stopped else "each shrunk"
    console.print(Text(f"{report.causes_found} untolerated divergence cause(s), {shrunk}{cut}:", style="red"))
    for f, path in zip(report.counterexamples, files, strict=True):
        prefix = len(setup_prefix(t.cfg, f.counters, f.events))
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("step", justify="right")
        table.add_column("action")
        for i, a in enumerate(f.actions):
            label = describe_action(a) + ("  (set-up)" if i < prefix else "")
            style = "red" if i == f.step else ("dim" if i < prefix else "")
            table.add_row(str(i), Text(label, style=style))
        console.print(Text(f"\n{f.kind} ({f.visibility}) at step {f.step}: {f.detail}", style="bold red"))
        console.print(Text(f"  assumes: {', '.join(f.assumptions) or 'none'}", style="yellow"))
        console.print(Text(f"  cause: {signature(f)}", style="dim"))
        console.print(table)
        if path:
            console.print(Text(f"  replay: {replay_command(path, absolute_reference(t.design) if t.design else None)}"
                               + _replaced(path)))
    _earlier_files(console, [p for p in files if p], "explore-*.yaml")


def _replaced(path: str) -> str:
    """The note on a saved file that overwrote one of the same name (`vpmu.outputs.SavedFile`)."""
    return " (replaced an existing file of that name)" if getattr(path, "replaced", False) else ""


def _earlier_files(console: Console, saved: Sequence[str], pattern: str) -> None:
    """Say how many files of `pattern` beside the saved ones this run did not write: an earlier
    run's (or another design's), left as they were."""
    from pathlib import Path

    for directory in sorted({str(Path(p).parent) for p in saved}):
        mine = {Path(p).name for p in saved if str(Path(p).parent) == directory}
        others = sorted(f.name for f in Path(directory).glob(pattern) if f.name not in mine)
        if others:
            n = len(others)
            console.print(Text(f"\n{directory} also holds {n} {pattern} file{'s' if n > 1 else ''} this run did not "
                               f"write (from earlier runs, left as they were)", style="dim"))


_STATUS_STYLE = {"pass": "green", "expected-fail": "yellow", "FAIL": "bold red", "unexpected-pass": "bold red"}


def conformance_table(results: Sequence[ConformanceResult]) -> Table:
    """`vpmu conformance`: one row per (scenario, era). The scenario and its source are shown on
    the first row of each scenario's group; a row whose result and explanation repeat the row
    above says "as KVM <era>" instead."""
    t = Table(title="vpmu conformance: upstream KVM PMU tests on the KVM model", header_style="bold")
    for col in ("scenario", "source", "era", "result", "why"):
        t.add_column(col, overflow="fold", no_wrap=col in ("era", "result"))
    same_as = ""
    for n, r in enumerate(results):
        prev = results[n - 1] if n else None
        first = prev is None or prev.scenario.name != r.scenario.name
        last = n + 1 == len(results) or results[n + 1].scenario.name != r.scenario.name
        conf = r.scenario.conformance
        assert conf is not None  # classify() judges only scenarios with a conformance block
        why = Text(r.why)
        if not first and prev is not None and r.why and (prev.status, prev.why) == (r.status, r.why):
            why = Text(f"as KVM {same_as}", style="dim")
        else:
            same_as = r.kvm
        t.add_row(r.scenario.name if first else "", conf.source.short() if first else "", r.kvm,
                  Text(r.status, style=_STATUS_STYLE.get(r.status, "")), why, end_section=last)
    return t


# --- vpmu check ---------------------------------------------------------------------------------


def _signed(v: int, width: int) -> str:
    """A counter value in the notation of `--values` and scenario files: -N near the wrap."""
    return str(v - (1 << width)) if v >> (width - 1) & 1 else _val(v)


def _compact(cfg: PmuConfig, o: Observation, used: Sequence[int]) -> str:
    """One observation in a narrow cell: the counters in use (signed), STATUS and PMIs."""
    idx = cfg.pmc_indices
    parts = [f"{counter_name(idx[n])}={_signed(o.counters[n], cfg.width_of(idx[n]))}" for n in used]
    if o.global_status:
        parts.append(f"st={o.global_status:#x}")
    if o.pmis:
        parts.append("pmi" + _pmis(o.pmis))
    if any(r.fault for r in o.results):
        parts.append("#GP")
    return " ".join(parts)


def difference_table(d: Difference) -> Table:
    """The difference's trace: the reference, the baseline and the patched design side by side."""
    runs = d.context.runs(d.actions)
    cfg = d.context.cfg
    idx = cfg.pmc_indices
    obs = runs.ref_obs + runs.base_obs + runs.patch_obs
    used = [n for n in range(len(idx)) if any(o.counters[n] for o in obs)] or [0]
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for col in ("step", "action", "reference", f"baseline: {short_name(d.context.baseline)}",
                f"patched: {short_name(d.context.patched)}"):
        table.add_column(col, overflow="fold")
    for i, (a, r, b, p) in enumerate(zip(d.actions, runs.ref_obs, runs.base_obs, runs.patch_obs, strict=True)):
        style = "red" if i == d.step else ""
        cr, cb, cp = (_compact(cfg, o, used) for o in (r, b, p))
        table.add_row(str(i), Text(short_action(a), style=style), Text(cr), Text(cb, style=style),
                      Text(cp, style="bold red" if cb != cp or i == d.step else ""))
    return table


def print_check(console: Console, report: CheckReport) -> None:
    """The verdict line first, then each regression (and each fix) as a short trace."""
    style = "bold red" if report.regressed else "bold green"
    console.print(Text(f"vpmu check: {report.verdict}", style=style))
    b = report.bounds
    console.print(Text(f"{report.design} against {report.baseline} on KVM {report.era}, {report.cfg.name} at "
                       f"{b.width} bits, {b.gp} GP + {b.fixed} fixed counters, depth {b.depth}, batch {b.batch}, "
                       f"native {','.join(map(str, b.native))}, values {','.join(map(str, b.values))}, "
                       f"kinds {','.join(b.kinds)}, events {','.join(b.events)}, skid {b.skid}, "
                       f"assume {','.join(b.assume) or 'none'}", style="dim"))
    st = report.stats
    exhaustive = [s for s in report.searches if s.mode == "exhaustive"]
    how = _ending(exhaustive[-1].stats) if exhaustive else "no exhaustive search (time budget)"
    n = len(report.scenarios)
    console.print(Text(f"{n} scenario{'' if n == 1 else 's'}, {st.states:,} states and {st.transitions:,} "
                       f"transitions explored ({how}) in {st.elapsed:.1f}s", style="dim"))
    why = f" ({report.engine_note})" if report.engine_note else ""
    console.print(Text(f"engine: {report.engine}{why}", style="dim"))
    for title, diffs in (("regression", report.regressions), ("fix", report.fixes)):
        for d in diffs:
            head = Text(f"\n{title}: {d.kind} ({d.visibility}) at step {d.step}, {d.origin}: ",
                        style="bold red" if title == "regression" else "bold green")
            head.append(Text(d.message, style=""))
            console.print(head)
            console.print(difference_table(d))
            if d.scenario_file:
                design = d.context.patched if d.direction == "regression" else d.context.baseline
                console.print(Text(f"  replay: {replay_command(d.scenario_file, absolute_reference(design))}"
                                   + _replaced(d.scenario_file), style="dim"))
    _earlier_files(console, [d.scenario_file for d in report.regressions + report.fixes if d.scenario_file],
                   "check-*.yaml")
