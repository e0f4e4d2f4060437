"""The `vpmu` command line (docs/json.md for --json, docs/scenario-format.md for files).

Exit codes: 0 no untolerated divergence and every expect holds; 1 otherwise; 2 bad input or
usage; 141 the output's reader went away (`vpmu ... | head -1`), as for a process killed by
SIGPIPE. Errors are one line on stderr (a traceback only with --debug).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from vpmu.assumptions import ASSUMPTIONS, CHECK_DEFAULT
from vpmu.errors import VpmuError, one_line, shown
from vpmu.explore.space import ACTION_KINDS
from vpmu.outputs import CLOSED_PIPE, OutputClosed, PipeGuard, silence_stdout

app = typer.Typer(
    name="vpmu",
    help="Check Linux KVM's x86 virtual PMU against an architectural reference PMU.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DEMO_SCENARIOS = ("seed-lost-overflow", "seed-duplicate-overflow", "seed-delayed-detection", "kut-emulated-instr")
DEMO_ERAS = ("6.6", "6.8", "6.9", "mediated")
_STATE: dict[str, bool] = {"debug": False}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("vpmu")
    except Exception:  # noqa: BLE001
        return "unknown"


def _console() -> Console:
    no_color = bool(os.environ.get("NO_COLOR")) or not sys.stdout.isatty()
    # a terminal's width (or $COLUMNS); piped output gets the wide layout
    fixed = sys.stdout.isatty() or bool(os.environ.get("COLUMNS"))
    # markup=False: user text (paths, names) is never read as rich markup (`[/]` would crash)
    return Console(no_color=no_color, highlight=False, soft_wrap=False, markup=False, emoji=False,
                   width=None if fixed else 200)


def _count(n: int, noun: str) -> str:
    """"1 scenario", "2 scenarios"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _version_cb(value: bool) -> None:
    if value:
        _out(f"vpmu {_version()}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_cb, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """vpmu: run guest PMU scenarios through the reference and a KVM model, report divergences."""
    _STATE["debug"] = debug


def _checker_options(base: Any, options: list[str] | None) -> Any:
    from vpmu.tolerances import options_from_mapping, parse_option

    if not options:
        return base
    values = base.to_dict()
    for text in options:
        name, value = parse_option(text)
        values[name] = value
    return options_from_mapping(values)


@app.command()
def run(
    scenario: Annotated[str, typer.Argument(help="A scenario file (.yaml) or a built-in scenario name.")],
    kvm: Annotated[str | None, typer.Option("--kvm", help="KVM era (see `vpmu eras`); default: the file's.")] = None,
    design: Annotated[str | None, typer.Option(
        "--design", help="Counter design name, 'module:Class', 'file.py:Class' or 'kernel:PATH' (a kernel "
        "tree's own C); default: the era's.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object (docs/json.md).")] = False,
    trace: Annotated[bool, typer.Option("--trace", help="Also show the step-by-step trace table: both machines' "
                                        "observations and the design's per-PMC fields after each step.")] = False,
    plot: Annotated[str | None, typer.Option("--plot", help="Write a timeline PNG to this path.")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="Checker option NAME=VALUE (see `vpmu options`); repeatable.")] = None,
    judge: Annotated[str | None, typer.Option(
        "--judge", help="What decides the exit code: 'all' (untolerated divergences and expect steps) or "
        "'expects' (the expect steps alone; divergences are reported as not judged); default: the file's "
        "`judge:`, else all.")] = None,
) -> None:
    """Run one scenario; exit 1 on an untolerated divergence or a failed expect."""
    from vpmu.eras import get_era
    from vpmu.outputs import check_file
    from vpmu.report import dumps, print_run
    from vpmu.run import execute
    from vpmu.scenario import load_scenario
    from vpmu.scenario.model import JUDGES

    if kvm is not None:
        get_era(kvm)  # bad input first: `--kvm ''` is an unknown era, not the default
    if plot is not None:
        check_file(plot, "--plot", (".png",))
    if judge is not None and judge not in JUDGES:
        raise VpmuError(f"--judge: expected {' or '.join(JUDGES)}, not {shown(judge)}")
    scn = load_scenario(scenario)
    opts = _checker_options(scn.checker, option)
    res = execute(scn, kvm=kvm, design=design, options=opts, judge=judge)
    if plot:
        from vpmu.plot import plot_run

        plot_run(res, plot)
    if kvm is not None:
        era_from, kvm_from = "from --kvm", "command line"
    elif scn.kvm_declared:
        era_from, kvm_from = "the scenario's era; --kvm to change", "scenario"
    else:
        era_from, kvm_from = "the default era: the scenario names none; --kvm to change", "default"
    if json_out:
        _out(dumps({**res.to_dict(), "kvm_from": kvm_from}))
    else:
        print_run(_console(), res, trace=trace, era_from=era_from)
        if plot:
            _out(f"timeline written to {plot}\n")
    raise typer.Exit(1 if res.failed else 0)


@app.command()
def demo(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object (docs/json.md).")] = False,
) -> None:
    """Run the seed scenarios on KVM 6.6, 6.8, 6.9 and mediated; print the verdict table.

    Exit 0 whenever the table is printed: its FAIL rows are the seed bugs it demonstrates
    (6.6's lost and duplicate overflows), not a failure of the demo."""
    from vpmu.eras import ERAS
    from vpmu.report import dumps, verdict_table
    from vpmu.run import execute
    from vpmu.scenario import load_scenario

    eras = [e for e in DEMO_ERAS if e in ERAS]
    runs = []
    cells: dict[tuple[str, str], str] = {}
    for name in DEMO_SCENARIOS:
        scn = load_scenario(name)
        for era in eras:
            res = execute(scn, kvm=era)
            runs.append(res)
            cells[(name, era)] = res.verdict
    if json_out:
        _out(dumps({
            "eras": eras,
            "scenarios": list(DEMO_SCENARIOS),
            "verdicts": {name: {era: cells[(name, era)] for era in eras} for name in DEMO_SCENARIOS},
            "runs": [r.to_dict() for r in runs],
        }))
        raise typer.Exit(0)
    console = _console()
    console.print(verdict_table(DEMO_SCENARIOS, eras, cells))
    console.print(
        "6.6's prev_counter snapshot loses an overflow when several emulated instructions run in one\n"
        "exit (seed-lost-overflow) and signals a wrap twice when perf already reported it\n"
        "(seed-duplicate-overflow, internal: the two signals coalesce into one PMI). 6.8's\n"
        "emulated_counter fixes both; what remains is the delay of R1 (status/PMI only at the next\n"
        "VM-entry, seed-delayed-detection), reported as tolerated. `vpmu run NAME --kvm ERA --trace` shows why."
    )
    raise typer.Exit(0)


@app.command()
def conformance(
    paths: Annotated[list[str] | None, typer.Argument(
        help="Conformance scenario files or directories; default: the conformance/ directory.")] = None,
    kvm: Annotated[list[str] | None, typer.Option(
        "--kvm", help="KVM era (repeatable); default: each scenario's declared eras.")] = None,
    design: Annotated[str | None, typer.Option(
        "--design", help="Run the table on this counter design instead of each era's own (judged against the "
                         "same per-era records).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object (docs/json.md).")] = False,
) -> None:
    """Run the upstream KVM PMU tests (conformance/*.yaml); exit 1 on a FAIL or unexpected-pass."""
    from vpmu.conformance import check_eras, collect, counts, run_all
    from vpmu.designs import resolve_design
    from vpmu.report import conformance_table, dumps

    kvm = check_eras(kvm)  # bad input first: exit 2 before anything is loaded or run
    if design is not None:
        resolve_design(design, "emulated-counter")
    results = run_all(collect(paths), kvm, design=design)
    n = counts(results)
    bad = n["FAIL"] + n["unexpected-pass"]
    if json_out:
        _out(dumps({"eras": list(kvm) if kvm else None, "design": design, "counts": n, "ok": bad == 0,
                    "results": [r.to_dict() for r in results]}))
    else:
        console = _console()
        console.print(conformance_table(results))
        scenarios = len({r.scenario.name for r in results})
        console.print(f"{_count(scenarios, 'scenario')}, {_count(len(results), 'run')}: "
                      + ", ".join(f"{v} {k}" for k, v in n.items()))
    raise typer.Exit(1 if bad else 0)


@app.command()
def scenarios() -> None:
    """List the built-in scenarios."""
    from vpmu.report import fit_line, line_width
    from vpmu.scenario import builtin_names, load_scenario

    width = line_width()
    for name in builtin_names():
        scn = load_scenario(name)
        first = scn.description.split(". ")[0].split(": ", 1)[-1] if scn.description else ""
        _out(fit_line(f"{name:28} [{scn.cpu.name}, KVM {scn.kvm}] {first}", width) + "\n")


@app.command()
def designs() -> None:
    """List the counter-tracking designs."""
    from vpmu.designs import DESIGNS

    for name, cls in DESIGNS.items():
        doc = (cls.__doc__ or "").strip().splitlines()
        _out(f"{name:18} {doc[0] if doc else ''}\n")
    _out(f"{'module:Class':18} your own design (docs/designs.md), also 'path/to/file.py:Class'\n")
    _out(f"{'kernel:PATH':18} a kernel tree's own pmu.c/pmu.h, compiled (docs/kernel-designs.md)\n")


@app.command()
def presets() -> None:
    """List the CPU presets."""
    from vpmu.config import PRESET_SUMMARY, PRESETS

    for name in PRESETS:
        _out(f"{name:16} {PRESET_SUMMARY.get(name, PRESETS[name].describe())}\n")


@app.command()
def eras() -> None:
    """List the KVM eras."""
    from vpmu.eras import ERAS

    for name, era in ERAS.items():
        _out(f"{name:10} [{era.default_design}] {era.description}\n")


@app.command()
def options() -> None:
    """List the checker options and their defaults."""
    from vpmu.tolerances import OPTION_HELP, CheckerOptions

    defaults = CheckerOptions().to_dict()
    for name, text in OPTION_HELP.items():
        value = defaults[name]
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        _out(f"{name:24} {shown:6} {text}\n")


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v, 0) for v in text.split(",") if v.strip())
    except ValueError:
        raise VpmuError(f"--{what} needs comma-separated integers, not {text!r}") from None
    if not values:
        raise VpmuError(f"--{what} needs at least one integer")
    return values


def _counters(text: str) -> tuple[int, int]:
    parts = _int_list(text, "counters")
    if len(parts) > 2:
        raise VpmuError(f"--counters is GP[,FIXED], not {text!r}")
    return parts[0], parts[1] if len(parts) == 2 else 0


# --- the search bounds: one declaration shared by `explore` and `check` --------------------------

KvmOpt = Annotated[str, typer.Option("--kvm", help="KVM era (see `vpmu eras`).")]
CpuOpt = Annotated[str, typer.Option("--cpu", help="CPU preset (see `vpmu presets`); its counters are "
                                     "narrowed to --width bits.")]
WidthOpt = Annotated[int | None, typer.Option("--width", help="Counter width in bits; small so that wraps "
                                              "are reachable in a few steps. Default: 4 on Intel, 48 on AMD "
                                              "(AMD counters are always 48 bits).")]
DepthOpt = Annotated[int, typer.Option("--depth", help="Explored actions after the set-up prefix.")]
CountersOpt = Annotated[str, typer.Option("--counters", help="GP[,FIXED]: how many GP and fixed counters "
                                          "count instructions with a PMI.")]
BatchOpt = Annotated[int, typer.Option("--batch", help="Largest invalid-guest-state batch (emulated "
                                       "instructions in one exit).")]
NativeOpt = Annotated[str, typer.Option("--native", help="Native run lengths the guest may execute in one step.")]
ValuesOpt = Annotated[str, typer.Option("--values", help="Counter write values; -N means 2^width - N.")]
KindsOpt = Annotated[str | None, typer.Option("--kinds", help="Comma-separated action kinds to use, of: "
                                              f"{', '.join(ACTION_KINDS)} (default: all but perf-fail; "
                                              "docs/explorer.md).")]
EventsOpt = Annotated[str, typer.Option("--events", help="What the counters count: instructions or branches, "
                                        "optionally :usr or :os (e.g. branches:usr); one for all counters or one "
                                        "per counter in use, GP first.")]
SkidOpt = Annotated[int, typer.Option("--skid", help="Bounded PMI skid: a held host PMI lands before the guest "
                                      "step after this many further guest steps.")]
AssumeOpt = Annotated[str, typer.Option("--assume", help="Host-timing assumptions actions may rest on: "
                                        f"{', '.join(ASSUMPTIONS)}, all or none (docs/kvm-model.md).")]
CHECK_ASSUME = ",".join(CHECK_DEFAULT)
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the random search.")]
RestartsOpt = Annotated[int, typer.Option("--restarts", help="Random sequences the random search tries.")]
BudgetOpt = Annotated[float | None, typer.Option("--time-budget", help="Stop cleanly after this many seconds "
                                                 "with what was found.")]
NoSaveOpt = Annotated[bool, typer.Option("--no-save", help="Do not write scenario files.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object (docs/json.md).")]
OptionOpt = Annotated[list[str] | None, typer.Option(
    "--option", "-o", help="Checker option NAME=VALUE (see `vpmu options`); repeatable.")]


def _bounds(cfg: Any, width: int | None, depth: int, counters: str, batch: int, native: str, values: str,
            kinds: str | None, events: str, skid: int, assume: str) -> Any:
    """The explorer's `Bounds` from the shared bound flags (checked by `Bounds.fit`); without
    --width, the CPU vendor's default (`vpmu.explore.default_width`)."""
    from vpmu.assumptions import parse_assumptions
    from vpmu.explore import Bounds, default_width

    gp, fixed = _counters(counters)
    kind_list = tuple(k.strip() for k in kinds.split(",") if k.strip()) if kinds is not None else None
    return Bounds(width=default_width(cfg) if width is None else width, gp=gp, fixed=fixed, depth=depth,
                  batch=batch, native=_int_list(native, "native"), values=_int_list(values, "values"),
                  events=tuple(e.strip() for e in events.split(",")), skid=skid,
                  assume=parse_assumptions(assume), **({"kinds": kind_list} if kind_list is not None else {}))


def _check_budget(seconds: float | None) -> None:
    if seconds is not None and not 0 < seconds < 10**7:  # also NaN
        raise VpmuError(f"--time-budget must be a number of seconds > 0, not {seconds}")


def _jobs(jobs: int | None) -> int:
    """--jobs, at most one worker per core (a note says so when it is capped); default: all."""
    cores = os.cpu_count() or 1
    if jobs is None:
        return cores
    if jobs < 1:
        raise VpmuError(f"--jobs must be >= 1, not {jobs}")
    if jobs > cores:
        sys.stderr.write(f"vpmu: note: --jobs {jobs} capped at {cores}, the number of cores\n")
        return cores
    return jobs


def _status_console(json_out: bool) -> Any:
    """A live status line on stderr when it is a terminal (and the output is not JSON)."""
    err = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")), highlight=False, markup=False)
    return err.status("...") if err.is_terminal and not json_out else None


@app.command()
def explore(
    kvm: KvmOpt = "6.8",
    design: Annotated[str | None, typer.Option(
        "--design", help="Counter design name, 'module:Class', 'file.py:Class' or 'kernel:PATH'; "
                         "default: the era's.")] = None,
    cpu: CpuOpt = "intel-v2",
    mode: Annotated[str, typer.Option("--mode", help="random (seeded swarm search), exhaustive (BFS over "
                                      "distinct states up to --depth) or auto (random, then exhaustive).")] = "auto",
    width: WidthOpt = None,
    depth: DepthOpt = 5,
    counters: CountersOpt = "1,0",
    batch: BatchOpt = 3,
    native: NativeOpt = "1,2,3",
    values: ValuesOpt = "-1,-2,-3,0",
    kinds: KindsOpt = None,
    events: EventsOpt = "instructions",
    skid: SkidOpt = 1,
    assume: AssumeOpt = "all",
    max_counterexamples: Annotated[int, typer.Option("--max-counterexamples", help="Most counterexamples "
                                                     "to shrink and report, one per cause.")] = 10,
    seed: SeedOpt = 0,
    restarts: RestartsOpt = 2000,
    jobs: Annotated[int | None, typer.Option("--jobs", help="Worker processes (default: all cores); "
                                             "results do not depend on it.")] = None,
    time_budget: BudgetOpt = None,
    save: Annotated[str, typer.Option("--save", help="Directory for the shrunk counterexamples as "
                                      "scenario files (`vpmu run FILE` replays one).")] = "vpmu-counterexamples",
    no_save: NoSaveOpt = False,
    json_out: JsonOpt = False,
    backend: Annotated[str, typer.Option("--backend", help="local (this machine's processes) or ray "
                                         "(needs pip install 'vpmu[ray]').")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster to join (default: start a "
                                                "local Ray instance).")] = None,
    option: OptionOpt = None,
    engine: Annotated[str, typer.Option("--engine", help="kernel (default): the compact kernel where it covers "
                                        "the configuration (compiled with numba where it can be), else the object "
                                        "models, saying why; object: the object models only.")] = "kernel",
) -> None:
    """Search guest-action interleavings for divergences; shrink and save what is found.

    Exit 1 when an untolerated divergence was found, 0 when none within the bounds."""
    from vpmu.config import preset
    from vpmu.designs import resolve_design
    from vpmu.eras import get_era
    from vpmu.explore import Backend, LocalBackend, Target
    from vpmu.explore import explore as run_explore
    from vpmu.explore.trail import save_counterexamples
    from vpmu.outputs import check_directory
    from vpmu.report import dumps, print_explore
    from vpmu.tolerances import CheckerOptions

    era = get_era(kvm)
    resolve_design(design, era.default_design)  # fail early on a bad design
    cfg = preset(cpu)
    bounds = _bounds(cfg, width, depth, counters, batch, native, values, kinds, events, skid, assume)
    bounds.fit(cfg)
    target = Target(cfg, era.name, design, _checker_options(CheckerOptions(), option))
    _check_budget(time_budget)
    workers = _jobs(jobs) if address is None else _jobs(None) if jobs is None else jobs  # a cluster: its own
    if workers < 1:
        raise VpmuError(f"--jobs must be >= 1, not {workers}")
    if not no_save:
        check_directory(save, "--save")
    if backend not in ("local", "ray"):
        raise VpmuError(f"unknown --backend {backend!r} (known: local, ray)")
    if address is not None and backend != "ray":
        raise VpmuError("--address needs --backend ray")
    if backend == "ray":
        from vpmu.explore.ray_backend import RayBackend

        # Ray starts on first use: after explore's checks
        chosen: Backend = RayBackend(address, num_cpus=None if jobs is None else workers)
    else:
        chosen = LocalBackend(workers)
    status = _status_console(json_out)

    def progress(stats: Any, found: int) -> None:
        if status is not None:
            status.update(f"{stats.states:,} states ({stats.states_per_second:,.0f}/s), depth "
                          f"{stats.depth_reached}, {found} divergence kind(s) so far")

    try:
        if status is not None:
            status.start()
        report = run_explore(target, bounds, mode=mode, seed=seed, restarts=restarts,
                             time_budget=time_budget, progress=progress, backend=chosen,
                             max_counterexamples=max_counterexamples, engine=engine,
                             announce=None if status is None else status.update)
    finally:
        if status is not None:
            status.stop()
        chosen.close()
    files = save_counterexamples(report, None if no_save else save)
    if json_out:
        _out(dumps(report.to_dict(files)))
    else:
        print_explore(_console(), report, files)
    raise typer.Exit(1 if report.untolerated else 0)


@app.command()
def check(
    design: Annotated[str, typer.Argument(help="The design under review: a built-in name, 'module:Class', "
                                          "'file.py:Class' or 'kernel:PATH'.")],
    kvm: KvmOpt = "6.8",
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="The design to compare with; default: the era's own (upstream).")] = None,
    cpu: CpuOpt = "intel-v2",
    width: WidthOpt = None,
    depth: DepthOpt = 5,
    counters: CountersOpt = "1,0",
    batch: BatchOpt = 3,
    native: NativeOpt = "1,2,3",
    values: ValuesOpt = "-1,-2,-3,0",
    kinds: KindsOpt = None,
    events: EventsOpt = "instructions",
    skid: SkidOpt = 1,
    assume: AssumeOpt = CHECK_ASSUME,
    seed: SeedOpt = 0,
    restarts: RestartsOpt = 2000,
    time_budget: BudgetOpt = None,
    scenarios: Annotated[list[str] | None, typer.Option(
        "--scenarios", help="Scenario files or directories to run on both designs (repeatable); default: "
                            "the built-in scenarios and the conformance/ directory.")] = None,
    save: Annotated[str, typer.Option("--save", help="Directory for the shrunk regressions and fixes as "
                                      "scenario files.")] = "vpmu-check",
    no_save: NoSaveOpt = False,
    json_out: JsonOpt = False,
    option: OptionOpt = None,
    engine: Annotated[str, typer.Option("--engine", help="kernel: every search on the compact kernel when it "
                                        "covers both designs and the bounds (a user design's fast form is first "
                                        "checked against its hooks), else on the object models, saying why; "
                                        "object: the object models only.")] = "kernel",
) -> None:
    """Does DESIGN break anything the baseline gets right? Runs the reference, the baseline and
    DESIGN on the same action sequences (scenarios, conformance, explorer) and reports every
    regression and fix, shrunk (docs/check.md).

    Exit 0: no regression. Exit 1: regressions. Exit 2: bad input."""
    from vpmu.check import check as run_check
    from vpmu.check import report_to_dict, save_differences
    from vpmu.config import preset
    from vpmu.designs import resolve_design
    from vpmu.eras import get_era
    from vpmu.explore import ENGINES
    from vpmu.outputs import check_directory
    from vpmu.report import dumps, print_check
    from vpmu.tolerances import CheckerOptions

    era = get_era(kvm)
    if engine not in ENGINES:
        raise VpmuError(f"unknown --engine {engine!r} (known: {', '.join(ENGINES)})")
    resolve_design(design, era.default_design)  # fail early on a bad design
    if baseline is not None:
        resolve_design(baseline, era.default_design)
    cfg = preset(cpu)
    bounds = _bounds(cfg, width, depth, counters, batch, native, values, kinds, events, skid, assume)
    bounds.fit(cfg)
    _check_budget(time_budget)
    if not no_save:
        check_directory(save, "--save")
    files = _check_scenarios(scenarios)
    status = _status_console(json_out)

    def progress(what: str) -> None:
        if status is not None:
            status.update(f"checking: {what}")

    try:
        if status is not None:
            status.start()
        report = run_check(design, era.name, cfg, bounds, files, baseline=baseline,
                           checker=_checker_options(CheckerOptions(), option), seed=seed, restarts=restarts,
                           time_budget=time_budget, progress=progress, engine=engine)
    finally:
        if status is not None:
            status.stop()
    report = save_differences(report, None if no_save else save)
    if json_out:
        _out(dumps(report_to_dict(report)))
    else:
        print_check(_console(), report)
    raise typer.Exit(1 if report.regressed else 0)


def _check_scenarios(paths: list[str] | None) -> list[Any]:
    """The scenarios `vpmu check` runs: the given files and the *.yaml of given directories, or
    every built-in scenario and the conformance/ directory."""
    from pathlib import Path

    from vpmu.conformance import collect, default_dir
    from vpmu.scenario import builtin_names, load_scenario

    if paths:
        files: list[str] = []
        for p in paths:
            if Path(p).is_dir():
                found = sorted(Path(p).glob("*.yaml"))
                if not found:
                    raise VpmuError(f"--scenarios {p}: no scenario files (*.yaml) in this directory")
                files.extend(str(f) for f in found)
            else:
                files.append(p)
        return [load_scenario(f) for f in files]
    try:
        conformance = collect([str(default_dir())])
    except VpmuError:  # an installed package without the source checkout's conformance/
        conformance = []
    return [load_scenario(n) for n in builtin_names()] + conformance


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if debug:  # accepted anywhere on the line, also after the subcommand
        args = ["--debug"] + [a for a in args if a != "--debug"]
    stdout = sys.stdout
    sys.stdout = PipeGuard(stdout)
    try:
        code = _main(args, debug)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
    except (OutputClosed, BrokenPipeError):
        sys.stdout = stdout
        silence_stdout()
        code = CLOSED_PIPE
    finally:
        sys.stdout = stdout
    sys.exit(code)


def _main(args: list[str], debug: bool) -> int:
    """Run the command line; its exit code (errors are one line on stderr)."""
    try:
        rv = app(args=args, prog_name="vpmu", standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.Abort:
        sys.stderr.write("vpmu: aborted\n")
        return 2
    except VpmuError as e:
        if debug:
            raise
        sys.stderr.write(f"vpmu: error: {one_line(str(e))}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("vpmu: interrupted\n")
        return 130
    except OutputClosed:
        raise
    except Exception as e:
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):  # a click usage error
            if type(e).__name__ == "NoArgsIsHelpError":
                sys.stdout.write(e.format_message() + "\n")
                return 2
            sys.stderr.write(f"vpmu: error: {one_line(e.format_message())}\n")
            return 2
        if debug:
            raise
        sys.stderr.write(f"vpmu: internal error: {type(e).__name__}: {one_line(str(e))} (rerun with --debug)\n")
        return 2
    if rv == 130:  # click's answer to a KeyboardInterrupt inside a command
        sys.stderr.write("vpmu: interrupted\n")
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    main()
