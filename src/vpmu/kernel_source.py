"""Find the counter-tracking functions in a kernel tree's pmu.c / pmu.h and build the C unit
that runs them behind vpmu's design seam (docs/kernel-designs.md).

Pure text processing: the caller reads the files and compiles the result (vpmu.kernel_design).
What is taken from the tree, per the seam (vpmu.designs):

* `kvm_pmu_incr_counter`, `pmc_pause_counter`, `pmc_read_counter`, `pmc_write_counter`: whole
  definitions, from whichever of pmu.c / pmu.h defines them (v6.6 keeps read and write in
  pmu.h; v6.8 moved pmc_write_counter to pmu.c, 89acf1237b81 / fd89499a5151).
* from `reprogram_counter`: the statement that calls `pmc_pause_counter(pmc)` and the condition
  of the `if (...) __kvm_perf_overflow(pmc, false)` that signals an emulated overflow (v6.6:
  `pmc->counter < pmc->prev_counter`; v6.8+: the value pmc_pause_counter returned). Together
  they become the seam's `pause_counter`.
* the statements after a `reprogram_complete:` label in `reprogram_counter` (v6.6-v6.8), the
  seam's `reprogram_complete` (v6.6 resets prev_counter there).

Everything else those functions use comes from the shim (kernel_shim/shim.h).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vpmu.errors import VpmuError

SEAM_FUNCTIONS = ("pmc_read_counter", "pmc_write_counter", "pmc_pause_counter", "kvm_pmu_incr_counter")


@dataclass(frozen=True, slots=True)
class Source:
    """One file of the tree: its path (as shown in messages and #line) and text."""

    path: str
    text: str


@dataclass(frozen=True, slots=True)
class Fragment:
    """A piece of tree C: `what` it is (for messages), where it starts, its text."""

    what: str
    path: str
    line: int
    text: str

    @property
    def last_line(self) -> int:
        return self.line + self.text.count("\n")


@dataclass(frozen=True, slots=True)
class KernelUnit:
    """The generated translation unit and what it was made of."""

    c_source: str
    fragments: tuple[Fragment, ...]
    has_reprogram_complete: bool
    writes_sample_period: bool


def mask_c(text: str) -> str:
    """`text` with comments and string/char literals blanked (newlines kept), so that
    braces, parentheses and names are only the code's."""
    out = list(text)

    def blank(i: int, j: int) -> None:
        for k in range(i, j):
            if out[k] != "\n":
                out[k] = " "

    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            i_next = n if j < 0 else j
            blank(i, i_next)
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i_next = n if j < 0 else j + 2
            blank(i, i_next)
        elif text[i] in "\"'":
            j = i + 1
            while j < n and text[j] not in (text[i], "\n"):
                j += 2 if text[j] == "\\" else 1
            blank(i + 1, min(j, n))
            i_next = j + 1
        else:
            i_next = i + 1
        i = i_next
    return "".join(out)


def _close(masked: str, open_at: int) -> int:
    """Index of the bracket closing the one at `open_at`, or -1."""
    pair = {"(": ")", "{": "}"}[masked[open_at]]
    depth = 0
    for k in range(open_at, len(masked)):
        if masked[k] == masked[open_at]:
            depth += 1
        elif masked[k] == pair:
            depth -= 1
            if depth == 0:
                return k
    return -1


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def find_function(src: Source, name: str) -> Fragment | None:
    """The first top-level definition of `name` in `src` (prototypes are skipped)."""
    masked = mask_c(src.text)
    for m in re.finditer(rf"\b{re.escape(name)}\s*\(", masked):
        if masked.count("{", 0, m.start()) != masked.count("}", 0, m.start()):
            continue  # not at file scope: a call
        close = _close(masked, m.end() - 1)
        if close < 0:
            continue
        body = re.compile(r"\s*\{").match(masked, close + 1)
        if body is None:
            continue  # a prototype
        end = _close(masked, body.end() - 1)
        if end < 0:
            continue
        start = masked.rfind("\n", 0, m.start()) + 1
        if not masked[start:m.start()].strip():  # return type on the line before
            start = masked.rfind("\n", 0, max(start - 1, 0)) + 1
        return Fragment(f"{name}()", src.path, _line_of(src.text, start), src.text[start:end + 1])
    return None


def _signature(fragment: Fragment) -> str:
    """The definition's declarator, as a prototype."""
    masked = mask_c(fragment.text)
    return " ".join(fragment.text[:masked.index("{")].split()) + ";"


@dataclass(frozen=True, slots=True)
class _Reprogram:
    pause: Fragment          # `[var =] pmc_pause_counter(pmc);`
    condition: Fragment      # the emulated-overflow test
    tail: Fragment | None    # statements after `reprogram_complete:`


def _reprogram_parts(fn: Fragment) -> _Reprogram:
    masked = mask_c(fn.text)

    def at(index: int) -> int:
        return fn.line + fn.text.count("\n", 0, index)

    pause = re.search(r"(?:\b([A-Za-z_]\w*)\s*=\s*)?\bpmc_pause_counter\s*\(\s*pmc\s*\)\s*;", masked)
    if pause is None:
        raise VpmuError(f"{fn.path}:{fn.line}: reprogram_counter() has no `pmc_pause_counter(pmc);` "
                        "statement; vpmu cannot tell how it pauses the counter")
    var = pause.group(1)
    pause_c = (f"__typeof__(pmc_pause_counter(pmc)) {var} = pmc_pause_counter(pmc);" if var
               else "pmc_pause_counter(pmc);")
    for m in re.finditer(r"\bif\s*\(", masked[pause.end():]):
        open_at = pause.end() + m.end() - 1
        close = _close(masked, open_at)
        if close > 0 and re.compile(r"\s*\{?\s*__kvm_perf_overflow\s*\(\s*pmc\s*,\s*false\s*\)").match(
                masked, close + 1):
            cond = " ".join(fn.text[open_at + 1:close].split())
            condition = Fragment("reprogram_counter()'s emulated-overflow test", fn.path, at(open_at),
                                 f"return ({cond});")
            break
    else:
        raise VpmuError(f"{fn.path}:{fn.line}: reprogram_counter() has no `if (...) "
                        "__kvm_perf_overflow(pmc, false)` after pausing; vpmu cannot find its "
                        "emulated-overflow test")
    tail = None
    label = re.search(r"^\s*reprogram_complete\s*:", masked, re.MULTILINE)
    if label is not None:
        body_end = masked.rindex("}")
        tail = Fragment("reprogram_counter()'s reprogram_complete tail", fn.path, at(label.end()),
                        fn.text[label.end():body_end])
    return _Reprogram(Fragment("reprogram_counter()'s pause", fn.path, at(pause.start()), pause_c),
                      condition, tail)


def _at(fragment: Fragment) -> str:
    return f'#line {fragment.line} "{fragment.path}"\n'


def build_unit(pmu_c: Source, pmu_h: Source) -> KernelUnit:
    """Find the seam functions (in pmu.c, else pmu.h) and generate the translation unit:
    shim, prototypes, the tree's functions, the generated pause and reprogram-complete
    wrappers, the entry points.

    `writes_sample_period`: pmc_write_counter lives in pmu.c, where pmc_update_sample_period
    is static (v6.8+, 89acf1237b81), so the write re-arms perf itself; from pmu.h (v6.6) its
    vendor callers do, which the model's pmc_write_counter stands for."""
    sources = (pmu_c, pmu_h)
    found: dict[str, Fragment] = {}
    for name in (*SEAM_FUNCTIONS, "reprogram_counter"):
        for src in sources:
            fn = find_function(src, name)
            if fn is not None:
                found[name] = fn
                break
        else:
            where = " or ".join(s.path for s in sources)
            hint = (" (trees before v6.6 open-code counter writes in vmx/pmu_intel.c; vpmu needs v6.6+)"
                    if name == "pmc_write_counter" else "")
            raise VpmuError(f"no definition of {name}() in {where}{hint}")
    parts = _reprogram_parts(found["reprogram_counter"])
    seam = [found[name] for name in SEAM_FUNCTIONS]
    lines = ['/* Generated by vpmu.kernel_source from a kernel tree; see docs/kernel-designs.md. */',
             '#include "shim.h"', "", *(_signature(f) for f in seam), ""]
    for fn in seam:
        lines += [_at(fn) + fn.text, ""]
    lines += ["static bool vpmu_emulated_overflow(struct kvm_pmc *pmc)", "{",
              "\tstruct kvm_pmu *pmu __attribute__((unused)) = pmc_to_pmu(pmc);",
              _at(parts.pause) + parts.pause.text, _at(parts.condition) + parts.condition.text, "}", "",
              "static void vpmu_reprogram_complete_tail(struct kvm_pmc *pmc)", "{",
              "\tstruct kvm_pmu *pmu __attribute__((unused)) = pmc_to_pmu(pmc);"]
    if parts.tail is not None:
        lines.append(_at(parts.tail) + parts.tail.text)
    lines += ["\t(void)pmc;", "}", "", '#include "entry.c"', ""]
    fragments = (*seam, parts.pause, parts.condition, *(() if parts.tail is None else (parts.tail,)))
    return KernelUnit("\n".join(lines), fragments, parts.tail is not None,
                      found["pmc_write_counter"].path == pmu_c.path)
