"""The compact step compiled by numba (`compiled_step`): `kstep`'s own functions compiled
together, and a design's fast form as first-class compiled functions.

Compiled, the rows are int64 arrays; `int64_row` turns a Python row into the same 64 bits.
The step is cached on disk (numba's cache=True), keyed also by `cache_key()`: numba keys a
cached function by its own source file only, so the layout's constants (imported from
.layout) would otherwise go stale in it; a cached compiled caller that calls the step holds
the step's machine code and must key its own cache by `cache_key()` too (`keyed_njit`).
"""

from __future__ import annotations

import contextlib
import hashlib
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from vpmu.designs import FastForm, Fields

from . import kstep

#: The widest counters the compiled step runs exactly as the Python one. Within Bounds' limits
#: (native runs of at most 64 wraps, depth at most 64) every sum it forms then stays inside
#: int64 (under 2**61); wider, `mask + 1` and long runs leave it. The caller checks the width.
JIT_MAX_WIDTH = 48
#: The fast form's hooks, in `step_row`'s argument order.
HOOK_NAMES = ("incr", "pause", "read", "write", "complete")

_U64_BITS = 1 << 64


def int64_row(values: Sequence[int]) -> list[int]:
    """A Python row as the compiled row holds it: each value's 64 bits as a signed int64."""
    return [v - _U64_BITS if v >= 1 << 63 else v for v in values]


class CompiledStep(NamedTuple):
    """A design's compiled step: `step` is `step_row` compiled (one for every design), the
    others the design's fast form as first-class compiled functions (numba cfuncs). An @njit
    caller takes them as arguments and calls `step(s, letter, prm, x, obs, incr, pause, read,
    write, complete)` over int64 arrays; since the hooks are first-class function values, not
    dispatchers, such a caller compiles once for every design and can be cached."""

    step: Any
    incr: Any
    pause: Any
    read: Any
    write: Any
    complete: Any

    def __call__(self, s: Any, letter: Any, prm: Any, x: Any, obs: Any) -> None:
        """One step from Python over int64 arrays (slow: ~0.1 ms of numba's dispatch per call;
        a compiled caller pays none)."""
        self.step(s, letter, prm, x, obs, self.incr, self.pause, self.read, self.write, self.complete)


_jit: dict[str, Any] = {}
_fast: dict[type[FastForm], tuple[Any, ...] | str] = {}


def jit_step_row() -> Any:
    """`kstep.step_row` compiled by numba, or why not (a one-line str). Every step function
    is compiled from its own code in a namespace where the others are compiled too, so the
    compiled step is kstep's code, not a copy. They are cached on disk (`keyed_njit`:
    a new process loads them in ~0.06 s instead of compiling for 12-30 s), inlined into each
    other (forceinline: twice as fast as calls, which pass every array as seven words) and
    compiled without reference counting (_nrt=False: they allocate nothing, and an array's
    count changing on each call cost more than the step)."""
    if "step_row" in _jit:
        return _jit["step_row"]
    try:
        import numba  # noqa: F401 - whether it imports
    except Exception as err:  # noqa: BLE001 - any failure to import numba is a reason
        _jit["step_row"] = f"numba is not importable ({type(err).__name__}: {_first_line(err)})"
        return _jit["step_row"]
    ns = dict(vars(kstep))
    options: dict[str, Any] = {"forceinline": True, "_nrt": False}
    key = cache_key()
    for fn in kstep.STEP_FUNCTIONS:
        ns[fn.__name__] = keyed_njit(_rebuilt(fn, ns), key, **options)
    _jit["step_row"] = ns["step_row"]
    return _jit["step_row"]


def compiled_fast(fast: FastForm) -> tuple[Any, ...] | str:
    """The fast form's hooks (HOOK_NAMES order) as numba cfuncs of fixed signatures over
    int64 fields, or why they do not compile (one line). Each hook is its method's function
    compiled with a dummy `self` (0: a fast form keeps no state) and its module's 64-bit
    constants as int64 two's complement (U64 is -1: `x & U64` is `x`)."""
    key = type(fast)
    if key not in _fast:
        _fast[key] = _compile_fast(key)
    return _fast[key]


def compiled_step(fast: FastForm) -> CompiledStep | str:
    """The compiled step for a design's fast form, or why there is none (one line)."""
    step = jit_step_row()
    if isinstance(step, str):
        return step
    hooks = compiled_fast(fast)
    if isinstance(hooks, str):
        return hooks
    return CompiledStep(step, *hooks)


def cache_key() -> str:
    """What the compiled step depends on besides its bytecode: kstep's source and every
    constant it reads (the layout's, perf's max_period), hashed."""
    consts = sorted((k, v) for k, v in vars(kstep).items() if _constant(v) and not k.startswith("__"))
    text = Path(kstep.__file__).read_bytes() + repr(consts).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def keyed_njit(fn: Callable[..., Any], key: str, **options: Any) -> Any:
    """`numba.njit(**options)(fn)` cached on disk under numba's own key and `key` (numba's
    key: the function's file, name and bytecode), or uncached where no cache directory can
    be written."""
    import numba
    from numba.core import caching

    base: Any = caching.FunctionCache

    class KeyedCache(base):  # type: ignore[misc]
        def _index_key(self, sig: Any, codegen: Any) -> Any:
            return (*super()._index_key(sig, codegen), key)

    dispatcher = numba.njit(**options)(fn)
    with contextlib.suppress(RuntimeError):  # no writable cache directory for fn's file: uncached
        dispatcher._cache = KeyedCache(fn)
    return dispatcher


def _compile_fast(cls: type[FastForm]) -> tuple[Any, ...] | str:
    try:
        import numba
    except Exception as err:  # noqa: BLE001 - any failure to import numba is a reason
        return f"numba is not importable ({type(err).__name__}: {_first_line(err)})"
    f = "UniTuple(int64, 3)"
    sigs = {"incr": f"{f}({f}, int64)", "pause": f"Tuple(({f}, boolean))({f}, int64, int64)",
            "read": f"int64({f}, int64, int64)", "write": f"{f}({f}, int64, int64, int64, boolean)",
            "complete": f"{f}({f})"}
    hooks = []
    for name in HOOK_NAMES:
        method = getattr(cls, name)
        try:
            raw = numba.njit(_rebuilt(method, _int64_globals(method.__globals__)))
            hooks.append(numba.cfunc(sigs[name])(_bound(name, raw)))
        except Exception as err:  # noqa: BLE001 - numba's typing and lowering errors vary
            return (f"the fast form's {cls.__name__}.{name} does not compile with numba "
                    f"({type(err).__name__}: {_first_line(err)})")
    return tuple(hooks)


def _bound(name: str, raw: Any) -> Callable[..., Any]:
    """The hook `name` without its `self` (a dummy 0), calling the compiled method `raw`."""
    if name == "incr":
        def incr(f: Fields, mask: int) -> Any:
            return raw(0, f, mask)
        return incr
    if name in ("pause", "read"):
        def pause_or_read(f: Fields, value: int, mask: int) -> Any:
            return raw(0, f, value, mask)
        return pause_or_read
    if name == "write":
        def write(f: Fields, value: int, count: int, mask: int, mask_writes: bool) -> Any:
            return raw(0, f, value, count, mask, mask_writes)
        return write

    def complete(f: Fields) -> Any:
        return raw(0, f)
    return complete


def _rebuilt(fn: Callable[..., Any], namespace: dict[str, Any]) -> Callable[..., Any]:
    """`fn`'s own code with the globals `namespace`."""
    out = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__qualname__ = fn.__qualname__
    out.__module__ = fn.__module__
    return out


def _int64_globals(namespace: dict[str, Any]) -> dict[str, Any]:
    """A module's globals with each unsigned 64-bit int as its int64 two's complement."""
    return {k: v - _U64_BITS if type(v) is int and 1 << 63 <= v < _U64_BITS else v for k, v in namespace.items()}


def _constant(v: object) -> bool:
    return isinstance(v, int | str) or (isinstance(v, tuple) and all(_constant(e) for e in v))


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200]
