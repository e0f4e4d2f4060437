"""The counter-tracking seam: how KVM keeps a PMC's value and detects emulated overflow.

A design is a small stateless object; per-PMC state lives on `KvmPmc` (`counter`,
`prev_counter`, `emulated_counter`, and the free-form `extra` dict for new designs). The KVM
model calls exactly these hooks:

* `incr_counter(kvm, pmc)`     — kvm_pmu_incr_counter(): one KVM-emulated event.
* `pause_counter(kvm, pmc)`    — pmc_pause_counter(): stop the perf event, fold counts into
                                 `pmc.counter`, return True iff *emulated* events wrapped.
* `read_counter(kvm, pmc)`     — pmc_read_counter(): guest-visible value; no side effects.
* `write_counter(kvm, pmc, v)` — pmc_write_counter() without the sample-period update (the
                                 caller re-arms the perf event afterwards), unless the design
                                 sets `writes_sample_period` (v6.8+ C does it itself).
* `reset_counter(kvm, pmc)`    — the per-PMC part of kvm_pmu_reset().
* `reprogram_complete(kvm, pmc)` — optional: the end of a completed reprogram_counter().

`kvm` is the vCPU seen through `DesignHost`, the few `vpmu.kvm.KvmVcpu` helpers a design may
use (mypy holds designs to it). That is the tracking axis. The other axis, what counts the
guest's native execution, is the design's `backing` (vpmu.backing): host perf events by
default; `MediatedDesign` names `GuestCounters`, the guest owning the hardware counters.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import sysconfig
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from vpmu.backing import CounterBacking, GuestCounters
from vpmu.errors import DesignError, VpmuError, shown
from vpmu.pmc_map import U64

if TYPE_CHECKING:
    from vpmu.eras import Era
    from vpmu.kvm import KvmPmc


class DesignHost(Protocol):
    """What a design may use of the vCPU; `vpmu.kvm.KvmVcpu` implements it (kernel names)."""

    @property
    def era(self) -> Era:
        """The era's switches (e.g. `mask_counter_writes`)."""

    def pmc_bitmask(self, pmc: KvmPmc) -> int:
        """pmc_bitmask() (pmu.h): the PMC's width mask."""

    def perf_running(self, pmc: KvmPmc) -> bool:
        """A perf event exists and is not paused."""

    def perf_read(self, pmc: KvmPmc) -> int:
        """perf_event_read_value(): the live perf count."""

    def perf_pause(self, pmc: KvmPmc) -> int:
        """perf_event_pause(reset=true): the count, zeroed; the PMC is marked paused."""

    def kvm_pmu_request_counter_reprogram(self, pmc: KvmPmc) -> None:
        """Set the PMC's reprogram bit and request KVM_REQ_PMU."""

    def signal_overflow(self, pmc: KvmPmc, in_pmi: bool) -> None:
        """Raise an overflow of `pmc` the way the design's backing does (vpmu.backing)."""


# --- fast forms: the hooks as pure functions over a PMC's integer fields ----------------------


#: A PMC's design fields as a fast form sees them: (counter, prev_counter, emulated_counter).
Fields = tuple[int, int, int]


class FastForm:
    """A design's hooks as pure functions over one PMC's integer fields, for the explorer's
    compact kernel (vpmu.explore.compact). `fields` = (counter, prev_counter, emulated_counter);
    `live` is the perf event's count while it runs (0 when paused or absent), `mask` the PMC's
    width mask. Each must compute exactly what the design's object hook does (the kernel's
    equivalence test checks it on every transition); a design whose `fast` is None runs on
    the object engine.

    The compiled kernel (vpmu.explore.compact.kstep.compiled_step) compiles these methods with
    numba, `self` a dummy: they may not keep state, and there the fields are int64. A field's
    64 bits are the same, but a u64 value >= 2**63 (`counter & U64` of a pre-6.6 unmasked
    write) is negative there, so a comparison with such a field must say what the kernel's
    unsigned one does (as `PrevCounterFast.pause` does); masked values compare alike.
    """

    def incr(self, f: Fields, mask: int) -> Fields:
        """incr_counter: one KVM-emulated event (the caller requests the reprogram)."""
        raise NotImplementedError

    def pause(self, f: Fields, live: int, mask: int) -> tuple[Fields, bool]:
        """pause_counter with the perf count `live` folded in: new fields, emulated wrap?"""
        raise NotImplementedError

    def read(self, f: Fields, live: int, mask: int) -> int:
        """read_counter: the guest-visible value."""
        raise NotImplementedError

    def write(self, f: Fields, value: int, live: int, mask: int, mask_writes: bool) -> Fields:
        """write_counter (the caller re-arms perf); `mask_writes` is the era's switch."""
        raise NotImplementedError

    def complete(self, f: Fields) -> Fields:
        """reprogram_complete."""
        return f


class PrevCounterFast(FastForm):
    """`PrevCounterDesign`'s hooks over (counter, prev_counter, emulated_counter)."""

    def incr(self, f: Fields, mask: int) -> Fields:
        return ((f[0] + 1) & mask, f[0], f[2])

    def pause(self, f: Fields, live: int, mask: int) -> tuple[Fields, bool]:
        counter = (f[0] + live) & mask
        # u64 compare: a prev_counter >= 2**63 (an unmasked write's, then incr) is above any
        # masked counter; only compiled (int64 fields) is it negative
        return (counter, f[1], f[2]), counter < f[1] or f[1] < 0

    def read(self, f: Fields, live: int, mask: int) -> int:
        return (f[0] + live) & mask

    def write(self, f: Fields, value: int, live: int, mask: int, mask_writes: bool) -> Fields:
        counter = f[0] + value - ((f[0] + live) & mask)
        return (counter & (mask if mask_writes else U64), f[1], f[2])

    def complete(self, f: Fields) -> Fields:
        return (f[0], 0, f[2])


class EmulatedCounterFast(FastForm):
    """`EmulatedCounterDesign`'s hooks over (counter, prev_counter, emulated_counter)."""

    def incr(self, f: Fields, mask: int) -> Fields:
        return (f[0], f[1], f[2] + 1)

    def pause(self, f: Fields, live: int, mask: int) -> tuple[Fields, bool]:
        counter = f[0] + live
        prev = counter & mask
        new = (counter + f[2]) & mask
        return (new, f[1], 0), new < prev

    def read(self, f: Fields, live: int, mask: int) -> int:
        return (f[0] + f[2] + live) & mask

    def write(self, f: Fields, value: int, live: int, mask: int, mask_writes: bool) -> Fields:
        return ((f[0] + value - ((f[0] + live) & mask)) & mask, f[1], 0)


class CounterDesign(ABC):
    """The interface a counter-tracking patch implements (see module docstring)."""

    name: str = "custom"
    backing: ClassVar[CounterBacking] = CounterBacking()
    writes_sample_period: bool = False
    #: The hooks as pure functions (`FastForm`) for the explorer's compact kernel; None: the
    #: explorer runs this design on the object engine (docs/designs.md "Fast form").
    fast: ClassVar[FastForm | None] = None

    @abstractmethod
    def incr_counter(self, kvm: DesignHost, pmc: KvmPmc) -> None: ...

    @abstractmethod
    def pause_counter(self, kvm: DesignHost, pmc: KvmPmc) -> bool: ...

    @abstractmethod
    def read_counter(self, kvm: DesignHost, pmc: KvmPmc) -> int: ...

    @abstractmethod
    def write_counter(self, kvm: DesignHost, pmc: KvmPmc, value: int) -> None: ...

    def reset_counter(self, kvm: DesignHost, pmc: KvmPmc) -> None:
        pmc.counter = 0
        pmc.prev_counter = 0
        pmc.emulated_counter = 0
        pmc.extra.clear()

    def reprogram_complete(self, kvm: DesignHost, pmc: KvmPmc) -> None:
        """Called when reprogram_counter() completes (not when perf creation failed)."""
        return None


class PrevCounterDesign(CounterDesign):
    """v6.1-v6.7 `prev_counter` design (de0f619564f4), spec §3.1 and §4.4 "pre" column."""

    name = "prev-counter"
    fast: ClassVar[FastForm | None] = PrevCounterFast()

    def incr_counter(self, kvm: DesignHost, pmc: KvmPmc) -> None:
        """Mirrors kvm_pmu_incr_counter() v6.1-v6.7 (pmu.c), spec §2.12: bump the base."""
        pmc.prev_counter = pmc.counter
        pmc.counter = (pmc.counter + 1) & kvm.pmc_bitmask(pmc)
        kvm.kvm_pmu_request_counter_reprogram(pmc)

    def pause_counter(self, kvm: DesignHost, pmc: KvmPmc) -> bool:
        """Mirrors pmc_pause_counter() pre-fd89499a5151 (pmu.c), spec §2.9 step 1 + the
        `counter < prev_counter` test of reprogram_counter() step 3."""
        if kvm.perf_running(pmc):
            pmc.counter = (pmc.counter + kvm.perf_pause(pmc)) & kvm.pmc_bitmask(pmc)
        return pmc.counter < pmc.prev_counter

    def read_counter(self, kvm: DesignHost, pmc: KvmPmc) -> int:
        """Mirrors pmc_read_counter() pre-patch (pmu.h), spec §1.1."""
        live = kvm.perf_read(pmc) if kvm.perf_running(pmc) else 0
        return (pmc.counter + live) & kvm.pmc_bitmask(pmc)

    def write_counter(self, kvm: DesignHost, pmc: KvmPmc, value: int) -> None:
        """Mirrors pmc_write_counter() v6.6 (pmu.h, b29a2acd36dd), spec §2.7; before v6.6 the
        result was not masked (spec §3.4, era switch mask_counter_writes)."""
        counter = pmc.counter + value - self.read_counter(kvm, pmc)
        pmc.counter = counter & (kvm.pmc_bitmask(pmc) if kvm.era.mask_counter_writes else U64)

    def reprogram_complete(self, kvm: DesignHost, pmc: KvmPmc) -> None:
        """The `prev_counter = 0` of reprogram_complete in reprogram_counter(), spec §2.9 step 6."""
        pmc.prev_counter = 0


class EmulatedCounterDesign(CounterDesign):
    """v6.8+ `emulated_counter` design (fd89499a5151, the seed patch), spec §4."""

    name = "emulated-counter"
    fast: ClassVar[FastForm | None] = EmulatedCounterFast()

    def incr_counter(self, kvm: DesignHost, pmc: KvmPmc) -> None:
        """Mirrors kvm_pmu_incr_counter() v6.8+ (pmu.c), spec §4.1: defer to reprogram."""
        pmc.emulated_counter += 1
        kvm.kvm_pmu_request_counter_reprogram(pmc)

    def pause_counter(self, kvm: DesignHost, pmc: KvmPmc) -> bool:
        """Mirrors pmc_pause_counter() v6.8+ (pmu.c), spec §4.1: snapshot after the perf fold."""
        counter = pmc.counter
        if kvm.perf_running(pmc):
            counter += kvm.perf_pause(pmc)
        prev = counter & kvm.pmc_bitmask(pmc)
        counter += pmc.emulated_counter
        pmc.counter = counter & kvm.pmc_bitmask(pmc)
        pmc.emulated_counter = 0
        return pmc.counter < prev

    def read_counter(self, kvm: DesignHost, pmc: KvmPmc) -> int:
        """Mirrors pmc_read_counter() v6.8+ (pmu.h), spec §1.1."""
        live = kvm.perf_read(pmc) if kvm.perf_running(pmc) else 0
        return (pmc.counter + pmc.emulated_counter + live) & kvm.pmc_bitmask(pmc)

    def write_counter(self, kvm: DesignHost, pmc: KvmPmc, value: int) -> None:
        """Mirrors pmc_write_counter() v6.8+ (pmu.c), spec §2.7: drop unprocessed emulated
        events first, then rebase so the guest-visible value is exactly `value`."""
        pmc.emulated_counter = 0
        pmc.counter = (pmc.counter + value - self.read_counter(kvm, pmc)) & kvm.pmc_bitmask(pmc)


class MediatedDesign(CounterDesign):
    """2026 mediated vPMU, spec §2.12 / §5: `counter` is the real value, no deferral."""

    name = "mediated"
    backing = GuestCounters()

    def incr_counter(self, kvm: DesignHost, pmc: KvmPmc) -> None:
        """Mirrors kvm_pmu_incr_counter() in the mediated series (pmu.c), spec §2.12:
        direct increment, wrap check at once, KVM_REQ_PMI if the PMC's PMI bit is set."""
        pmc.counter = (pmc.counter + 1) & kvm.pmc_bitmask(pmc)
        if pmc.counter == 0:
            kvm.signal_overflow(pmc, in_pmi=False)

    def pause_counter(self, kvm: DesignHost, pmc: KvmPmc) -> bool:
        """No perf event to pause; nothing is ever deferred."""
        return False

    def read_counter(self, kvm: DesignHost, pmc: KvmPmc) -> int:
        """Mirrors pmc_read_counter() mediated: the counter itself."""
        return pmc.counter & kvm.pmc_bitmask(pmc)

    def write_counter(self, kvm: DesignHost, pmc: KvmPmc, value: int) -> None:
        """Mirrors pmc_write_counter() mediated: `counter = val & M`."""
        pmc.counter = value & kvm.pmc_bitmask(pmc)


#: The hooks a fast form stands for (`FastForm`).
HOOKS = ("incr_counter", "pause_counter", "read_counter", "write_counter", "reset_counter", "reprogram_complete")


def fast_form(design: CounterDesign) -> FastForm | str:
    """The design's fast form, or why it has none usable (one line). A fast form speaks only
    for the hooks of the class that declares it: a subclass that overrides a hook without
    declaring its own `fast` has none (else the kernel would run the parent's hooks)."""
    cls = type(design)
    owner = next((c for c in cls.__mro__ if "fast" in c.__dict__), None)
    if design.fast is None or owner is None:
        return f"design {design.name!r} has no fast form"
    for c in cls.__mro__[: cls.__mro__.index(owner)]:
        for hook in HOOKS:
            if hook in c.__dict__:
                return (f"design {design.name!r} overrides {hook} of {owner.__name__} without its own fast form")
    return design.fast


DESIGNS: dict[str, type[CounterDesign]] = {
    "prev-counter": PrevCounterDesign,
    "emulated-counter": EmulatedCounterDesign,
    "mediated": MediatedDesign,
}


def load_design(ref: str) -> type[CounterDesign]:
    """Load a design class from `package.module:Class` or `path/to/file.py:Class`."""
    if ":" not in ref:
        raise VpmuError(f"design reference {ref!r} must look like 'module:Class' or 'file.py:Class'")
    where, _, cls_name = ref.rpartition(":")
    try:
        if where.endswith(".py") or "/" in where or "\\" in where:
            path = Path(where)
            if not path.is_file():
                raise VpmuError(f"design file {where!r} does not exist")
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
            mod_name = f"vpmu_user_design_{digest}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                raise VpmuError(f"cannot load design file {where!r}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except VpmuError:
        raise
    except (Exception, SystemExit) as err:  # noqa: BLE001 - any import failure becomes a one-line error
        raise DesignError(_where(err, where), ref, "import", _failure(err)) from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise VpmuError(f"design {ref!r}: {where!r} has no attribute {cls_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, CounterDesign)):
        raise VpmuError(f"design {ref!r} is not a subclass of vpmu.designs.CounterDesign")
    if getattr(cls, "__abstractmethods__", None):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise VpmuError(f"design {ref!r} does not implement: {missing}")
    return cls


def _missing_class(path: str) -> str:
    """The error for a design file named without its class: which classes it defines, read
    from its syntax tree (nothing in it runs before the user names one)."""
    import ast

    if not Path(path).is_file():
        return f"design file {path!r} does not exist (a design file is named 'path/to/file.py:Class')"
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        classes = []
    defines = f"; it defines {', '.join(classes)}" if classes else ""
    example = classes[-1] if classes else "Class"
    return f"design {path!r} names a file but no class: write '{path}:{example}' (FILE:CLASS){defines}"


def resolve_design(design: str | type | None, default: str) -> CounterDesign:
    """None -> the era's default; a DESIGNS name; a load_design reference; a class; or
    `kernel:PATH`, a kernel tree's own C (vpmu.kernel_design, which does the compiling)."""
    if design is None:
        design = default
    if isinstance(design, str) and design.startswith("kernel:"):
        from vpmu.kernel_design import load_kernel_design

        return load_kernel_design(design.removeprefix("kernel:"))
    if isinstance(design, str):
        if design not in DESIGNS and ":" not in design:
            if design.endswith(".py") or Path(design).is_file():
                raise VpmuError(_missing_class(design))
            raise VpmuError(f"unknown design {design!r} (known: {', '.join(DESIGNS)}; or 'module:Class', "
                            "'path/to/file.py:Class', 'kernel:PATH')")
        if design in DESIGNS:
            return DESIGNS[design]()
        return guarded(load_design(design), design)
    if isinstance(design, type) and issubclass(design, CounterDesign):
        return design() if design in DESIGNS.values() else guarded(design, design.__name__)
    raise VpmuError(f"not a counter design: {design!r}")


# --- user designs: every failure is one line naming the design's file:line, the hook, the step ----

#: The hooks the KVM model calls, and what each must return (None: anything, it is ignored).
_HOOKS: dict[str, type | None] = {"incr_counter": None, "pause_counter": bool, "read_counter": int,
                                  "write_counter": None, "reset_counter": None, "reprogram_complete": None}
_PMC_FIELDS = ("counter", "prev_counter", "emulated_counter")


def _failure(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"calls sys.exit({shown(err.code)})"
    return f"{type(err).__name__}: {err}"


def _where(err: BaseException, hint: str | None = None, code: object = None) -> str:
    """FILE:LINE of a user design's failure: a syntax error's own position, else the innermost
    traceback frame outside vpmu (the design's code), else `code`'s first line or `hint`."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}:{err.lineno}"
    ours = (str(Path(__file__).parent), sysconfig.get_paths()["stdlib"], "<frozen")
    best = None
    tb = err.__traceback__
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not name.startswith(ours):
            best = f"{name}:{tb.tb_lineno}"
        tb = tb.tb_next
    if best is not None:
        return best
    co = getattr(code, "__code__", None)
    if co is not None:
        return f"{co.co_filename}:{co.co_firstlineno}"
    return hint or "<design>"


def guarded(cls: type[CounterDesign], ref: str) -> CounterDesign:
    """An instance of the user design `cls` whose hooks turn any failure (an exception,
    `sys.exit`, a result of the wrong type, a PMC field left not an integer) into a
    `DesignError`; its constructor too."""
    try:
        design = cls()
    except (Exception, SystemExit) as err:  # noqa: BLE001 - user code: any failure is the design's
        raise DesignError(_where(err, None, cls.__init__), ref, "constructor", _failure(err)) from None
    if not isinstance(getattr(design, "name", None), str) or not isinstance(design.backing, CounterBacking):
        raise DesignError(_where(ValueError(), None, cls.__init__), ref, "constructor",
                          "`name` must be a string and `backing` a vpmu.backing.CounterBacking")
    for hook, result in _HOOKS.items():
        try:
            setattr(design, hook, _guard(getattr(design, hook), hook, result, ref))
        except AttributeError:  # __slots__: cannot be guarded, so it is not accepted
            raise DesignError(_where(ValueError(), None, cls.__init__), ref, "constructor",
                              "a design class may not use __slots__") from None
    return design


def _guard(fn: Callable[..., object], hook: str, result: type | None, ref: str) -> Callable[..., object]:
    def call(kvm: DesignHost, pmc: KvmPmc, *args: int) -> object:
        try:
            out = fn(kvm, pmc, *args)
        except DesignError:
            raise
        except (Exception, SystemExit) as err:  # noqa: BLE001 - user code
            raise DesignError(_where(err, None, fn), ref, hook, _failure(err)) from None
        if result is not None and (not isinstance(out, result) or (result is int and isinstance(out, bool))):
            raise DesignError(_where(ValueError(), None, fn), ref, hook,
                              f"returned {shown(out)}, expected {'true or false' if result is bool else 'an integer'}")
        if result is int and not 0 <= int(out) <= U64:  # type: ignore[call-overload]
            raise DesignError(_where(ValueError(), None, fn), ref, hook, f"returned {shown(out)}, not a 64-bit value")
        for name in _PMC_FIELDS:
            v = getattr(pmc, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v.bit_length() > 64 + 32:
                raise DesignError(_where(ValueError(), None, fn), ref, hook,
                                  f"left pmc.{name} = {shown(v)}, not a non-negative integer")
        return out

    return call


def is_user_reference(ref: str | None) -> bool:
    """Does `ref` name code outside vpmu (a module, a `.py` file or a `kernel:` tree)? Such a
    design is loaded only when the command line names it (`--design`), never because a
    scenario file does (docs/reliability.md "No code from data")."""
    return ref is not None and ref not in DESIGNS


def replay_command(path: str, design: str | None) -> str:
    """The command that replays a saved scenario file: `vpmu run PATH`, plus the `--design` a
    user design needs (the file names it, but only the command line may load it)."""
    import shlex

    cmd = f"vpmu run {shlex.quote(path)}"
    return cmd + f" --design {shlex.quote(design)}" if design is not None and is_user_reference(design) else cmd


def absolute_reference(ref: str) -> str:
    """`ref` with a file or tree path made absolute, so that a scenario file storing it names
    the same code from any working directory (built-in names and modules are unchanged)."""
    if ref.startswith("kernel:"):
        return "kernel:" + str(Path(ref.removeprefix("kernel:")).resolve())
    where, sep, cls = ref.rpartition(":")
    if sep and (where.endswith(".py") or "/" in where or "\\" in where):
        return f"{Path(where).resolve()}:{cls}"
    return ref


def short_name(ref: str) -> str:
    """A file-name-safe label of a design reference: the built-in name, the class name, or
    `kernel-DIR` for a kernel tree."""
    if ref.startswith("kernel:"):
        label = "kernel-" + (Path(ref.removeprefix("kernel:")).resolve().name or "tree")
    else:
        label = ref.rpartition(":")[2] or ref
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
