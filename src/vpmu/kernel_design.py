"""`kernel:PATH` designs: a kernel tree's own counter-tracking C behind vpmu's design seam.

`load_kernel_design(path)` reads the tree's arch/x86/kvm/pmu.c and pmu.h, builds a C unit from
their seam functions (vpmu.kernel_source), compiles it with the system C compiler against
vpmu's shim (kernel_shim/shim.h), caches the shared object by the hash of everything that went
into it, loads it with ctypes and returns a `KernelDesign`: a plain `CounterDesign` whose
hooks call the compiled functions. All I/O (reading the tree, compiling, the cache) happens
here, once, when the design is resolved; a hook call only copies the PMC into the C frame,
runs the C, and copies it back (docs/kernel-designs.md).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vpmu.designs import CounterDesign, DesignHost
from vpmu.errors import VpmuError
from vpmu.kernel_source import Fragment, KernelUnit, Source, build_unit
from vpmu.kvm import REQ_PMI, REQ_PMU, KvmVcpu
from vpmu.pmc_map import U64

if TYPE_CHECKING:
    from vpmu.kvm import KvmPmc

PREFIX = "kernel:"
SHIM_DIR = Path(__file__).parent / "kernel_shim"
CFLAGS = ("-std=gnu11", "-O1", "-fPIC", "-shared", "-fno-strict-aliasing", "-fwrapv",
          "-Werror=implicit-function-declaration", "-Werror=implicit-int", "-Werror=int-conversion",
          "-Werror=incompatible-pointer-types", "-Wl,-z,defs")

#: vpmu_state[] slots (kernel_shim/shim.h VPMU_SLOTS); the first five a design may change.
SLOTS = ("counter", "prev_counter", "emulated_counter", "is_paused", "reprogram_pmi",
         "type", "idx", "intr", "eventsel", "current_config", "perf_event", "gp_bitmask", "fixed_bitmask")
WRITABLE = 5
_FORMAT = f"={len(SLOTS)}Q"
#: the shim's KVM_REQ_* numbers -> the model's request bits
_REQUESTS = {1: REQ_PMU, 2: REQ_PMI}


class KernelDesign(CounterDesign):
    """A kernel tree's kvm_pmu_incr_counter / pmc_pause_counter (+ reprogram_counter's
    emulated-overflow test) / pmc_read_counter / pmc_write_counter, run as compiled C.

    Stateless like every design: per-PMC state stays on `KvmPmc`; the C frame is loaded from
    it before each call and stored back after. Model helpers the C reaches (perf pause/read,
    sample period, reprogram requests) run on the model's state in between. The C reaches
    more of the vCPU than `DesignHost` offers a Python design (struct kvm_pmu's reprogram
    bitmap and masks, kvm_make_request, pmc_update_sample_period), so the hooks require the
    `KvmVcpu` behind it."""

    def __init__(self, name: str, lib: ctypes.CDLL, unit: KernelUnit) -> None:
        self.name = name
        self.writes_sample_period = unit.writes_sample_period
        self._has_tail = unit.has_reprogram_complete
        self._lib = lib
        self._state = (ctypes.c_uint64 * len(SLOTS)).in_dll(lib, "vpmu_state")
        self._ctx: tuple[KvmVcpu, KvmPmc, str] | None = None  # the call in flight
        self._synced: tuple[int, ...] = ()  # what the model and the C frame last agreed on
        self._failure: Exception | None = None
        fn = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)
        self._callbacks = (
            fn(self._model(lambda kvm, pmc, _: kvm.perf_pause(pmc))),
            fn(self._model(lambda kvm, pmc, _: kvm.perf_read(pmc))),
            fn(self._model(lambda kvm, pmc, _: kvm.pmc_update_sample_period(pmc))),
            fn(self._model(lambda kvm, pmc, _: kvm.kvm_pmu_request_counter_reprogram(pmc))),
            fn(self._model(lambda kvm, _, req: kvm.make_request(_request(req)))),
            ctypes.CFUNCTYPE(None, ctypes.c_char_p)(self._fault),
        )
        lib.vpmu_bind(*self._callbacks)
        lib.vpmu_pause_counter.restype = ctypes.c_bool
        lib.vpmu_read_counter.restype = ctypes.c_uint64
        lib.vpmu_write_counter.argtypes = (ctypes.c_uint64,)
        for entry in ("vpmu_incr_counter", "vpmu_write_counter", "vpmu_reprogram_complete"):
            getattr(lib, entry).restype = None

    # --- the seam -----------------------------------------------------------------------

    def incr_counter(self, kvm: DesignHost, pmc: KvmPmc) -> None:
        """The tree's kvm_pmu_incr_counter() (pmu.c)."""
        self._call(kvm, pmc, "kvm_pmu_incr_counter", self._lib.vpmu_incr_counter)

    def pause_counter(self, kvm: DesignHost, pmc: KvmPmc) -> bool:
        """The tree's pmc_pause_counter() (pmu.c), then reprogram_counter()'s emulated-overflow
        test on its result (v6.6: `counter < prev_counter`; v6.8+: the returned flag)."""
        return bool(self._call(kvm, pmc, "pmc_pause_counter", self._lib.vpmu_pause_counter))

    def read_counter(self, kvm: DesignHost, pmc: KvmPmc) -> int:
        """The tree's pmc_read_counter() (pmu.h); it must not change the PMC, since vpmu also
        reads counters to observe them."""
        return self._call(kvm, pmc, "pmc_read_counter", self._lib.vpmu_read_counter, pure=True)

    def write_counter(self, kvm: DesignHost, pmc: KvmPmc, value: int) -> None:
        """The tree's pmc_write_counter() (pmu.h v6.6, pmu.c v6.8+)."""
        self._call(kvm, pmc, "pmc_write_counter", self._lib.vpmu_write_counter, value & U64)

    def reprogram_complete(self, kvm: DesignHost, pmc: KvmPmc) -> None:
        """The statements after reprogram_counter()'s `reprogram_complete:` label, if any."""
        if self._has_tail:
            self._call(kvm, pmc, "reprogram_counter", self._lib.vpmu_reprogram_complete)

    # --- the frame exchange --------------------------------------------------------------

    @staticmethod
    def _pack(kvm: KvmVcpu, pmc: KvmPmc) -> tuple[int, ...]:
        gp, fixed = kvm.pmu.counter_bitmask
        return (pmc.counter & U64, pmc.prev_counter & U64, pmc.emulated_counter & U64, int(pmc.is_paused),
                kvm.pmu.reprogram_pmi & U64, pmc.type, pmc.idx, int(pmc.intr), pmc.eventsel,
                pmc.current_config, int(pmc.perf_event is not None), gp, fixed)

    def _to_c(self, kvm: KvmVcpu, pmc: KvmPmc) -> None:
        self._synced = self._pack(kvm, pmc)
        struct.pack_into(_FORMAT, self._state, 0, *self._synced)

    def _from_c(self, kvm: KvmVcpu, pmc: KvmPmc, function: str, pure: bool = False) -> None:
        """Store the C frame into the model if it changed since they last agreed. A change to a
        slot the seam does not let a design change, or any change by a `pure` function, is an
        error, not dropped."""
        values = struct.unpack_from(_FORMAT, self._state, 0)
        if values == self._synced:
            return
        changed = [name for name, old, new in zip(SLOTS, self._synced, values, strict=True) if old != new]
        if pure:
            raise VpmuError(f"{self.name}: {function}() changed {', '.join(changed)}; vpmu reads counters "
                            "to observe them and needs it free of side effects")
        fixed = [name for name in changed if name not in SLOTS[:WRITABLE]]
        if fixed:
            raise VpmuError(f"{self.name}: {function}() changed {', '.join(fixed)}; a counter-tracking design "
                            f"may change only {', '.join(SLOTS[:WRITABLE])} (docs/kernel-designs.md)")
        pmc.counter, pmc.prev_counter, pmc.emulated_counter = values[0], values[1], values[2]
        pmc.is_paused = bool(values[3])
        kvm.pmu.reprogram_pmi = values[4]
        self._synced = values

    def _call(self, host: DesignHost, pmc: KvmPmc, function: str, entry: Callable[..., int | bool | None],
              *args: int, pure: bool = False) -> int:
        """Run one C entry point on `pmc`: frame in, C, frame out; its result as an int."""
        if not isinstance(host, KvmVcpu):
            raise TypeError(f"{self.name}: kernel designs run on a vpmu.kvm.KvmVcpu, not {type(host).__name__}")
        kvm = host
        if self._ctx is not None:
            raise RuntimeError(f"{self.name}: {function}() called while {self._ctx[2]}() runs")
        self._to_c(kvm, pmc)
        self._ctx, self._failure = (kvm, pmc, function), None
        try:
            result = entry(*args)
        finally:
            self._ctx = None
        if self._failure is not None:
            raise self._failure
        self._from_c(kvm, pmc, function, pure)
        return int(result or 0)

    def _model(self, helper: Callable[[KvmVcpu, KvmPmc, int], object]) -> Callable[[int], int]:
        """A C -> model call: store the frame, run `helper` on the model, load the frame back.
        Exceptions cannot cross C; the first is kept and re-raised when the C returns."""
        def call(arg: int) -> int:
            if self._ctx is None or self._failure is not None:
                return 0
            kvm, pmc, function = self._ctx
            try:
                self._from_c(kvm, pmc, function)
                result = helper(kvm, pmc, arg)
                self._to_c(kvm, pmc)
            except Exception as err:  # noqa: BLE001 - re-raised after the C returns
                self._failure = err
                return 0
            return int(result) & U64 if isinstance(result, int) else 0
        return call

    def _fault(self, what: bytes) -> None:
        if self._failure is None:
            function = self._ctx[2] if self._ctx is not None else "the kernel C"
            self._failure = VpmuError(f"{self.name}: {function}() called {what.decode()}")


def _request(req: int) -> int:
    if req not in _REQUESTS:
        raise VpmuError(f"kvm_make_request({req}): vpmu models only KVM_REQ_PMU and KVM_REQ_PMI here")
    return _REQUESTS[req]


# --- loading a tree -----------------------------------------------------------------------------


def tree_sources(path: Path) -> tuple[Source, Source]:
    """pmu.c and pmu.h of a kernel tree, or of its arch/x86/kvm folder."""
    for kvm_dir in (path / "arch" / "x86" / "kvm", path):
        c, h = kvm_dir / "pmu.c", kvm_dir / "pmu.h"
        if c.is_file() and h.is_file():
            return (Source(str(c.resolve()), c.read_text(encoding="utf-8", errors="replace")),
                    Source(str(h.resolve()), h.read_text(encoding="utf-8", errors="replace")))
    raise VpmuError(f"kernel:{path}: no arch/x86/kvm/pmu.c and pmu.h there (give a kernel tree or its "
                    "arch/x86/kvm folder)")


def compiler() -> list[str]:
    """The C compiler: $CC (may carry flags), else cc, gcc or clang on PATH."""
    if os.environ.get("CC"):
        return os.environ["CC"].split()
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    raise VpmuError("kernel: designs need a C compiler (install gcc or clang, or set CC)")


def cache_dir() -> Path:
    """$VPMU_CACHE_DIR, else $XDG_CACHE_HOME/vpmu, else ~/.cache/vpmu; then kernel-designs/."""
    base = os.environ.get("VPMU_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vpmu")
    return Path(base) / "kernel-designs"


_C_ENV = {**os.environ, "LC_ALL": "C"}  # plain ASCII quotes in diagnostics


@functools.cache
def _compiler_version(cc: tuple[str, ...]) -> str:
    try:
        return subprocess.run([*cc, "--version"], capture_output=True, text=True, env=_C_ENV,
                              check=False).stdout
    except OSError as err:
        raise VpmuError(f"cannot run the C compiler {cc[0]!r}: {err}") from None


def build(unit: KernelUnit, label: str) -> Path:
    """The shared object for `unit`: from the cache if an identical build exists, else
    compiled now and stored atomically (concurrent workers may race; the last rename wins)."""
    cc = compiler()
    version = _compiler_version(tuple(cc))
    digest = hashlib.sha256()
    for part in (unit.c_source, (SHIM_DIR / "shim.h").read_text(), (SHIM_DIR / "entry.c").read_text(),
                 " ".join((*cc, *CFLAGS)), version):
        digest.update(part.encode() + b"\0")
    out_dir = cache_dir()
    target = out_dir / f"{digest.hexdigest()[:32]}.so"
    if target.is_file():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        c_file, so_file = Path(tmp) / "unit.c", Path(tmp) / "unit.so"
        c_file.write_text(unit.c_source, encoding="utf-8")
        res = subprocess.run([*cc, *CFLAGS, "-I", str(SHIM_DIR), "-o", str(so_file), str(c_file)],
                             capture_output=True, text=True, env=_C_ENV, check=False)
        if res.returncode != 0:
            raise VpmuError(f"{label}: {explain_compile_errors(res.stderr, unit.fragments)}")
        c_file.replace(target.with_suffix(".c"))
        so_file.replace(target)
    return target


_MISSING = (
    (re.compile(r"implicit declaration of function '([^']+)'"), "calls {}()"),
    (re.compile(r"'([^']+)' undeclared"), "uses {}"),
    (re.compile(r"unknown type name '([^']+)'"), "uses the type {}"),
    (re.compile(r"'struct ([^']+)' has no member named '([^']+)'"), "uses struct {} field {}"),
    (re.compile(r"undefined reference to `([^']+)'"), "calls {}()"),
)
_DIAG = re.compile(r"^(.*?):(\d+):(?:\d+:)? (?:fatal )?error: (.*)$")


def explain_compile_errors(stderr: str, fragments: tuple[Fragment, ...]) -> str:
    """One line: for each compile error, the tree function (file:line) and, where it is a name
    the shim does not provide, that name."""
    def owner(path: str, line: int) -> str:
        for f in fragments:
            if f.path == path and f.line <= line <= f.last_line:
                return f"{f.what} ({Path(path).name}:{line})"
        return f"{Path(path).name}:{line}"

    missing: list[str] = []
    other: list[str] = []
    for raw in stderr.splitlines():
        m = _DIAG.match(raw.strip())
        if m is None:
            continue
        where, message = owner(m.group(1), int(m.group(2))), m.group(3)
        for pattern, template in _MISSING:
            hit = pattern.search(message)
            if hit:
                item = f"{where} {template.format(*hit.groups())}"
                if item not in missing:
                    missing.append(item)
                break
        else:
            other.append(f"{where}: {message}")
    if missing:
        return ("; ".join(missing) + ", which the vpmu kernel shim does not provide "
                "(docs/kernel-designs.md says what it models)")
    if other:
        return f"does not compile against the vpmu kernel shim: {other[0]}"
    first = next((ln for ln in stderr.splitlines() if ln.strip()), "no diagnostics")
    return f"the C compiler failed: {first}"


#: designs loaded in this process, by tree path and the files' (mtime, size): a World is built
#: per explored sequence, and each must not re-read the tree or re-run the compiler
_LOADED: dict[tuple[str, tuple[int, ...]], KernelDesign] = {}
#: one design per shared object: the C's model callbacks are global to the library
_BY_OBJECT: dict[Path, KernelDesign] = {}


def load_kernel_design(path: str) -> KernelDesign:
    """Resolve `kernel:PATH` (PATH without the prefix) into a design, compiling if needed."""
    label = f"{PREFIX}{path}"
    if not path:
        raise VpmuError("kernel: needs a path, e.g. kernel:/src/linux")
    try:
        sources = tree_sources(Path(path))
        stamp = tuple(v for s in sources for st in (os.stat(s.path),) for v in (st.st_mtime_ns, st.st_size))
        if (path, stamp) in _LOADED:
            return _LOADED[(path, stamp)]
        unit = build_unit(*sources)
    except VpmuError as err:
        raise VpmuError(str(err) if str(err).startswith(PREFIX) else f"{label}: {err}") from None
    so = build(unit, label)
    if so not in _BY_OBJECT:
        try:
            lib = ctypes.CDLL(str(so))
        except OSError as err:
            raise VpmuError(f"{label}: cannot load {so}: {err}") from None
        lib.vpmu_slots.restype = ctypes.c_char_p
        slots = lib.vpmu_slots()
        if not isinstance(slots, bytes) or tuple(slots.decode().split(",")) != SLOTS:
            raise VpmuError(f"{label}: {so} was built with a different shim (slots {slots!r}); "
                            f"remove {cache_dir()} and retry")
        _BY_OBJECT[so] = KernelDesign(label, lib, unit)
    _LOADED[(path, stamp)] = _BY_OBJECT[so]
    return _BY_OBJECT[so]
