"""Values computed at run time from values read earlier in the same run (docs/scenario-format.md,
"Saved values and computed values").

Upstream PMU tests calibrate: they measure a count C, then preset a counter to `1 - C` so that
the next run of the same code overflows exactly once, or assert `count < N`. A scenario saves a
read's result under a name (`save: C`) and later writes and expects compute from it. The
arithmetic is a tiny integer language parsed with `ast` and evaluated by walking the tree: no
Python is ever executed, and only integers, saved names, `+ - * // % & | ^ << >> ~` and
parentheses are accepted.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: A saved value's name: an identifier, as in a C test (`C`, `count`, `loop_min`).
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")

#: Longest expression accepted: a readable formula, not a program.
MAX_TEXT = 200

_BINOPS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod, ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}
_UNARY: dict[type[ast.unaryop], Callable[[int], int]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert,
}
#: Intermediate results stay within this many bits (a shift by 10**9 would build a huge int).
_MAX_BITS = 128


class ExprError(ValueError):
    """An expression that does not parse or cannot be evaluated (the caller adds file:line)."""


@dataclass(frozen=True, slots=True)
class Expr:
    """An integer expression over saved names, e.g. `1 - C` or `(C >> 1) + 2`."""

    text: str
    names: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Expr:
        if len(text) > MAX_TEXT:
            raise ExprError(f"an expression of at most {MAX_TEXT} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except (SyntaxError, ValueError):  # ValueError: a NUL character
            raise ExprError("an integer, or an expression over saved names like '1 - C'") from None
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                if not NAME_RE.fullmatch(node.id):
                    raise ExprError(f"a saved name of at most 32 characters, not {node.id[:40]!r}")
                names.add(node.id)
            elif isinstance(node, ast.Constant):
                if isinstance(node.value, bool) or not isinstance(node.value, int):
                    raise ExprError("only integer constants in an expression")
            elif isinstance(node, ast.BinOp):
                if type(node.op) not in _BINOPS:
                    raise ExprError("only + - * // % & | ^ << >> ~ and parentheses in an expression")
            elif isinstance(node, ast.UnaryOp):
                if type(node.op) not in _UNARY:
                    raise ExprError("only + - * // % & | ^ << >> ~ and parentheses in an expression")
            elif not isinstance(node, ast.Expression | ast.Load | ast.operator | ast.unaryop):
                raise ExprError("only integers, saved names, + - * // % & | ^ << >> ~ and parentheses "
                                "in an expression")
        return cls(" ".join(text.split()), frozenset(names))

    def evaluate(self, saved: Mapping[str, int]) -> int:
        """The value with `saved` names bound; ExprError for an unsaved name, a division by zero
        or a result wider than 128 bits."""
        return _eval(ast.parse(self.text, mode="eval").body, saved)

    def __str__(self) -> str:
        return self.text


def _eval(node: ast.expr, saved: Mapping[str, int]) -> int:
    match node:
        case ast.Constant(value=int() as v):
            out = v
        case ast.Name(id=name):
            if name not in saved:
                raise ExprError(f"{name} has no value (its read faulted or did not run)")
            out = saved[name]
        case ast.UnaryOp(op=op, operand=operand):
            out = _UNARY[type(op)](_eval(operand, saved))
        case ast.BinOp(left=left, op=op, right=right):
            a, b = _eval(left, saved), _eval(right, saved)
            if isinstance(op, ast.FloorDiv | ast.Mod) and b == 0:
                raise ExprError("division by zero")
            if isinstance(op, ast.LShift | ast.RShift) and not 0 <= b <= _MAX_BITS:
                raise ExprError(f"a shift by 0..{_MAX_BITS}, not {b}")
            out = _BINOPS[type(op)](a, b)
        case _:  # parse() admits nothing else
            raise ExprError("not an expression")
    if out.bit_length() > _MAX_BITS:
        raise ExprError(f"a value of at most {_MAX_BITS} bits")
    return out
