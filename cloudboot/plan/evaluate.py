"""Evaluate plan expressions with HCL's value rules.

Values are Python None, bool, int/float, str, list and dict. Like HCL: ``==`` never equates
values of different types (``1 == "1"`` is false, ``true == 1`` too), arithmetic wants numbers,
conditions want bools, a template made of one ``${x}`` yields x itself, and interpolating null
is an error. Names in scope: ``arch``, ``local.*``, ``self.*`` (inside a target), ``lldp.*``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from cloudboot.plan.errors import PlanError
from cloudboot.plan.parser import (
    Attribute,
    Binary,
    Call,
    Conditional,
    Expr,
    GetAttr,
    Index,
    ListExpr,
    Literal,
    ObjectExpr,
    Template,
    Unary,
    Variable,
)

MAX_INT_BITS = 3400  # about 1000 decimal digits


class Facts(dict):  # type: ignore[type-arg]
    """A dict whose missing keys read as null: LLDP facts may simply be absent."""


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def a_type(value: Any) -> str:
    """The type name with its article, for messages: "a string", "an object"."""
    name = type_name(value)
    return ("an " if name[0] in "aeiou" else "a ") + name


def to_text(value: Any) -> str | None:
    """HCL's conversion to string; None when the value has no string form."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**63:
            return str(int(value))
        return repr(value)
    return None


def equal(a: Any, b: Any) -> bool:
    ta, tb = type_name(a), type_name(b)
    if ta != tb:
        return False
    if ta == "list":
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if ta == "object":
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return bool(a == b)


class Locals:
    """The ``locals`` of a plan, evaluated on first use so they may refer to each other."""

    def __init__(self, attributes: dict[str, Attribute], make: Callable[[], Evaluator]) -> None:
        self.attributes = attributes
        self.values: dict[str, Any] = {}
        self._busy: set[str] = set()
        self._make = make

    def get(self, name: str, line: int, filename: str) -> Any:
        if name in self.values:
            return self.values[name]
        attr = self.attributes.get(name)
        if attr is None:
            known = ", ".join(sorted(self.attributes)) or "none"
            raise PlanError(f'local "{name}" is not defined (locals: {known})', filename, line)
        if name in self._busy:
            raise PlanError(f'local "{name}" refers to itself', filename, line)
        self._busy.add(name)
        try:
            value = self._make().eval(attr.expr)
        finally:
            self._busy.discard(name)
        self.values[name] = value
        return value

    def all(self, filename: str) -> dict[str, Any]:
        for name, attr in self.attributes.items():
            self.get(name, attr.line, filename)
        return dict(self.values)


class Evaluator:
    def __init__(
        self,
        filename: str,
        variables: dict[str, Any],
        local_values: Locals | None,
        target: str | None = None,
    ) -> None:
        self.filename = filename
        self.variables = variables
        self.locals = local_values
        self.target = target

    def error(self, message: str, node: Expr) -> PlanError:
        return PlanError(message, self.filename, node.line, self.target)

    def eval(self, node: Expr) -> Any:
        method = getattr(self, "_" + type(node).__name__)
        return method(node)

    def _Literal(self, node: Literal) -> Any:
        return node.value

    def _Template(self, node: Template) -> Any:
        if len(node.parts) == 1 and isinstance(node.parts[0], Expr):
            return self.eval(node.parts[0])
        out = []
        for part in node.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = self.eval(part)
            text = to_text(value)
            if text is None:
                raise self.error(f"cannot put {a_type(value)} value into a string", part)
            out.append(text)
        return "".join(out)

    def _Variable(self, node: Variable) -> Any:
        if node.name == "local":
            raise self.error('"local" needs an attribute, as in local.name', node)
        if node.name not in self.variables:
            known = ", ".join(sorted([*self.variables, "local"]))
            hint = " (self exists inside a target block)" if node.name == "self" else ""
            raise self.error(f'unknown variable "{node.name}" (known: {known}){hint}', node)
        return self.variables[node.name]

    def _GetAttr(self, node: GetAttr) -> Any:
        if isinstance(node.obj, Variable) and node.obj.name == "local":
            if self.locals is None:
                raise self.error("locals cannot be used here", node)
            try:
                return self.locals.get(node.name, node.line, self.filename)
            except PlanError as e:
                raise e.located(target=self.target) from None
        return self._lookup(self.eval(node.obj), node.name, node, f".{node.name}")

    def _Index(self, node: Index) -> Any:
        obj = self.eval(node.obj)
        key = self.eval(node.key)
        if isinstance(obj, list):
            whole = isinstance(key, int) or (isinstance(key, float) and key.is_integer())
            if isinstance(key, bool) or not whole:
                raise self.error(f"a list index must be a whole number, not {key!r}", node)
            i = int(key)
            if not 0 <= i < len(obj):
                raise self.error(f"index {i} is out of range (the list has {len(obj)})", node)
            return obj[i]
        text = to_text(key)
        if text is None:
            raise self.error(f"cannot index with {a_type(key)} value", node)
        return self._lookup(obj, text, node, f"[{text!r}]")

    def _lookup(self, obj: Any, key: str, node: Expr, shown: str) -> Any:
        if not isinstance(obj, dict):
            raise self.error(f"{a_type(obj)} value has no attribute {shown}", node)
        if key in obj:
            return obj[key]
        if isinstance(obj, Facts):
            return None
        known = ", ".join(sorted(obj)) or "none"
        raise self.error(f"no attribute {shown} here (known: {known})", node)

    def _ListExpr(self, node: ListExpr) -> Any:
        return [self.eval(item) for item in node.items]

    def _ObjectExpr(self, node: ObjectExpr) -> Any:
        out: dict[str, Any] = {}
        for key_node, value_node in node.items:
            key = to_text(self.eval(key_node))
            if key is None:
                raise self.error("an object key must be a string", key_node)
            if key in out:
                raise self.error(f'object key "{key}" is set twice', key_node)
            out[key] = self.eval(value_node)
        return out

    def _Unary(self, node: Unary) -> Any:
        value = self.eval(node.operand)
        if node.op == "!":
            return not self._bool(value, node, "!")
        return -self._number(value, node, "-")

    def _Binary(self, node: Binary) -> Any:
        op = node.op
        if op in ("&&", "||"):
            left = self._bool(self.eval(node.left), node, op)
            if (op == "&&" and not left) or (op == "||" and left):
                return left
            return self._bool(self.eval(node.right), node, op)
        a, b = self.eval(node.left), self.eval(node.right)
        if op == "==":
            return equal(a, b)
        if op == "!=":
            return not equal(a, b)
        x, y = self._number(a, node, op), self._number(b, node, op)
        if op in ("/", "%") and y == 0:
            raise self.error(f"division by zero ({op})", node)
        try:
            result = _arith(op, x, y)
        except OverflowError:
            result = None
        # Cap big integers so they always print (Python refuses str() past 4300 digits).
        if result is None or (type(result) is int and result.bit_length() > MAX_INT_BITS):
            raise self.error(f"number too large for {op}", node)
        return result

    def _Conditional(self, node: Conditional) -> Any:
        if self._bool(self.eval(node.cond), node, "?"):
            return self.eval(node.then)
        return self.eval(node.other)

    def _Call(self, node: Call) -> Any:
        fn = FUNCTIONS.get(node.name)
        if fn is None:
            known = ", ".join(sorted(FUNCTIONS))
            raise self.error(f"unknown function {node.name}() (plans know: {known})", node)
        args = [self.eval(a) for a in node.args]
        try:
            return fn(*args)
        except (TypeError, ValueError) as e:
            raise self.error(f"{node.name}(): {e}", node) from None

    def _bool(self, value: Any, node: Expr, op: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"{op} needs a bool, got {a_type(value)}", node)
        return value

    def _number(self, value: Any, node: Expr, op: str) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"{op} needs numbers, got {a_type(value)}", node)
        return value


def _arith(op: str, x: int | float, y: int | float) -> Any:
    if op == "<":
        return x < y
    if op == ">":
        return x > y
    if op == "<=":
        return x <= y
    if op == ">=":
        return x >= y
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if op == "%":
        return x % y
    # "/": exact when it divides, as HCL's arbitrary-precision numbers would be
    if isinstance(x, int) and isinstance(y, int) and x % y == 0:
        return x // y
    return x / y


def _want(value: Any, kind: str, what: str) -> Any:
    if type_name(value) != kind:
        raise ValueError(f"{what} must be a {kind}, got {a_type(value)}")
    return value


def _join(sep: Any, items: Any) -> str:
    _want(sep, "string", "the separator")
    texts = [to_text(v) for v in _want(items, "list", "the second argument")]
    if any(t is None for t in texts):
        raise ValueError("join() takes a list of strings")
    return str(sep).join(t for t in texts if t is not None)


def _lookup(obj: Any, key: Any, *default: Any) -> Any:
    _want(obj, "object", "the first argument")
    if len(default) > 1:
        raise ValueError("takes 2 or 3 arguments")
    if key in obj:
        return obj[key]
    if default:
        return default[0]
    raise ValueError(f"no key {key!r} (keys: {', '.join(sorted(obj)) or 'none'})")


def _coalesce(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    raise ValueError("all arguments are null or empty")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "join": _join,
    "lower": lambda s: _want(s, "string", "the argument").lower(),
    "upper": lambda s: _want(s, "string", "the argument").upper(),
    "contains": lambda xs, v: any(equal(x, v) for x in _want(xs, "list", "the first argument")),
    "lookup": _lookup,
    "coalesce": _coalesce,
}
