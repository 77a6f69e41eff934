"""Recursive-descent parser: HCL text to a small syntax tree of bodies and expressions.

Covers what plans need: attributes, labelled blocks, comments, numbers, bools, null, strings
with ``${}`` interpolation, heredocs, lists, objects, references with ``.attr`` and ``[index]``,
unary/binary operators with HCL's precedence, ``cond ? a : b`` and calls of a few functions.
For-expressions, splats and template directives are refused with a clear message.
"""

from __future__ import annotations

from typing import Any, cast

from cloudboot.plan.errors import PlanError
from cloudboot.plan.lexer import Lexer, Tok

MAX_NESTING = 32  # keeps the recursion far below Python's limit on hostile input

# Binary operators by precedence, loosest first.
_LEVELS: tuple[tuple[str, ...], ...] = (
    ("||",),
    ("&&",),
    ("==", "!="),
    ("<", ">", "<=", ">="),
    ("+", "-"),
    ("*", "/", "%"),
)


class Node:
    """A syntax node: plain slotted classes, as dataclasses cost ~1 ms each to import."""

    __slots__ = ("line",)
    fields: tuple[str, ...] = ()

    def __init__(self, line: int, *values: Any) -> None:
        self.line = line
        for name, value in zip(self.fields, values, strict=True):
            setattr(self, name, value)

    def __repr__(self) -> str:
        args = ", ".join(repr(getattr(self, f)) for f in self.fields)
        return f"{type(self).__name__}({self.line}, {args})"


class Expr(Node):
    __slots__ = ()


class Literal(Expr):
    __slots__ = fields = ("value",)
    value: Any


class Template(Expr):
    __slots__ = fields = ("parts",)
    parts: list[str | Expr]


class Variable(Expr):
    __slots__ = fields = ("name",)
    name: str


class GetAttr(Expr):
    __slots__ = fields = ("obj", "name")
    obj: Expr
    name: str


class Index(Expr):
    __slots__ = fields = ("obj", "key")
    obj: Expr
    key: Expr


class ListExpr(Expr):
    __slots__ = fields = ("items",)
    items: list[Expr]


class ObjectExpr(Expr):
    __slots__ = fields = ("items",)
    items: list[tuple[Expr, Expr]]


class Unary(Expr):
    __slots__ = fields = ("op", "operand")
    op: str
    operand: Expr


class Binary(Expr):
    __slots__ = fields = ("op", "left", "right")
    op: str
    left: Expr
    right: Expr


class Conditional(Expr):
    __slots__ = fields = ("cond", "then", "other")
    cond: Expr
    then: Expr
    other: Expr


class Call(Expr):
    __slots__ = fields = ("name", "args")
    name: str
    args: list[Expr]


class Attribute:
    __slots__ = ("name", "expr", "line")

    def __init__(self, name: str, expr: Expr, line: int) -> None:
        self.name, self.expr, self.line = name, expr, line


class Body:
    __slots__ = ("attributes", "blocks")

    def __init__(self) -> None:
        self.attributes: list[Attribute] = []
        self.blocks: list[Block] = []


class Block:
    __slots__ = ("type", "labels", "body", "line")

    def __init__(self, type: str, labels: list[str], body: Body, line: int) -> None:
        self.type, self.labels, self.body, self.line = type, labels, body, line


def parse(text: str, filename: str) -> Body:
    """Parse a whole HCL file into its top-level body."""
    return Parser(Lexer(text, filename)).parse_file()


def _describe(tok: Tok) -> str:
    if tok.kind == "eof":
        return "the end of the file"
    if tok.kind == "nl":
        return "a newline"
    if tok.kind == "quote":
        return "a string"
    if tok.kind == "heredoc":
        return "a heredoc"
    return repr(str(tok.value))


class Parser:
    def __init__(self, lexer: Lexer) -> None:
        self.lx = lexer
        self._tok: Tok | None = None
        self._skip_nl = 0  # > 0 inside brackets, where newlines are only white space
        self._depth = 0

    # -- tokens
    def peek(self) -> Tok:
        if self._tok is None:
            self._tok = self.lx.next()
        while self._skip_nl and self._tok.kind == "nl":
            self._tok = self.lx.next()
        return self._tok

    def take(self) -> Tok:
        tok = self.peek()
        self._tok = None
        return tok

    def at(self, value: str) -> bool:
        tok = self.peek()
        return tok.kind == "punct" and tok.value == value

    def expect(self, value: str, what: str) -> Tok:
        tok = self.peek()
        if not (tok.kind == "punct" and tok.value == value):
            raise self.error(f"expected {value!r} {what}, found {_describe(tok)}", tok)
        return self.take()

    def error(self, message: str, tok: Tok) -> PlanError:
        return PlanError(message, self.lx.filename, tok.line)

    def _enter(self, tok: Tok) -> None:
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise self.error(f"nesting deeper than {MAX_NESTING} levels", tok)

    # -- bodies
    def parse_file(self) -> Body:
        body = self.parse_body(closing=False)
        tok = self.peek()
        if tok.kind != "eof":
            raise self.error(f"unexpected {_describe(tok)} at the top level", tok)
        return body

    def parse_body(self, closing: bool) -> Body:
        body = Body()
        seen: dict[str, int] = {}
        while True:
            tok = self.peek()
            if tok.kind == "nl":
                self.take()
                continue
            if tok.kind == "eof" or (closing and self.at("}")):
                return body
            if tok.kind != "ident":
                raise self.error(
                    f"expected an attribute name or a block type, found {_describe(tok)}", tok
                )
            name = str(self.take().value)
            if self.at("="):
                self.take()
                if name in seen:
                    raise self.error(
                        f'attribute "{name}" is set twice (first on line {seen[name]})', tok
                    )
                seen[name] = tok.line
                body.attributes.append(Attribute(name, self.parse_expr(), tok.line))
            else:
                body.blocks.append(self._block(name, tok))
            self._end_of_item(closing)

    def _block(self, name: str, start: Tok) -> Block:
        labels: list[str] = []
        while not self.at("{"):
            tok = self.peek()
            if tok.kind == "ident":
                labels.append(str(self.take().value))
            elif tok.kind == "quote":
                self.take()
                text, stop = self.lx.template_chunk(quoted=True)
                if stop != '"':
                    raise self.error("a block label is a plain string, without ${...}", tok)
                labels.append(text)
            else:
                raise self.error(
                    f'expected "=" or a block after "{name}", found {_describe(tok)}', tok
                )
        self._enter(start)
        self.take()
        body = self.parse_body(closing=True)
        self.expect("}", f'to close the "{name}" block from line {start.line}')
        self._depth -= 1
        return Block(name, labels, body, start.line)

    def _end_of_item(self, closing: bool) -> None:
        tok = self.peek()
        if tok.kind in ("nl", "eof") or (closing and self.at("}")):
            return
        raise self.error(f"expected a newline, found {_describe(tok)}", tok)

    # -- expressions
    def parse_expr(self) -> Expr:
        cond = self._binary(0)
        if not self.at("?"):
            return cond
        tok = self.take()
        self._enter(tok)
        then = self.parse_expr()
        self.expect(":", "in a conditional (cond ? a : b)")
        other = self.parse_expr()
        self._depth -= 1
        return Conditional(tok.line, cond, then, other)

    def _binary(self, level: int) -> Expr:
        if level == len(_LEVELS):
            return self._unary()
        left = self._binary(level + 1)
        ops = _LEVELS[level]
        while self.peek().kind == "punct" and self.peek().value in ops:
            tok = self.take()
            left = Binary(tok.line, str(tok.value), left, self._binary(level + 1))
        return left

    def _unary(self) -> Expr:
        if self.at("!") or self.at("-"):
            tok = self.take()
            self._enter(tok)
            operand = self._unary()
            self._depth -= 1
            return Unary(tok.line, str(tok.value), operand)
        return self._postfix(self._primary())

    def _postfix(self, expr: Expr) -> Expr:
        while True:
            if self.at("."):
                tok = self.take()
                name = self.peek()
                if name.kind != "ident":
                    if name.kind == "number" or self.at("*"):
                        raise self.error("legacy .N indexes and splats are not supported", tok)
                    raise self.error(f"expected a name after '.', found {_describe(name)}", tok)
                self.take()
                expr = GetAttr(tok.line, expr, str(name.value))
            elif self.at("["):
                tok = self.take()
                self._enter(tok)
                self._skip_nl += 1
                if self.at("*"):
                    raise self.error("splat expressions [*] are not supported", tok)
                key = self.parse_expr()
                self.expect("]", "to close the index")
                self._skip_nl -= 1
                self._depth -= 1
                expr = Index(tok.line, expr, key)
            else:
                return expr

    def _primary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "number":
            self.take()
            return Literal(tok.line, tok.value)
        if tok.kind == "quote":
            self.take()
            return self._template(tok, quoted=True)
        if tok.kind == "heredoc":
            self.take()
            body, first_line = cast(tuple[str, int], tok.value)
            sub = Parser(Lexer(body, self.lx.filename, first_line))
            sub._depth = self._depth
            return sub._template(tok, quoted=False)
        if tok.kind == "ident":
            self.take()
            word = str(tok.value)
            if word in ("true", "false", "null"):
                return Literal(tok.line, {"true": True, "false": False, "null": None}[word])
            if self.at("("):
                return self._call(word, tok)
            if word == "for":
                raise self.error("for expressions are not supported in plans", tok)
            return Variable(tok.line, word)
        if self.at("(") or self.at("[") or self.at("{"):
            self._enter(tok)
            self.take()
            self._skip_nl += 1
            expr: Expr
            if tok.value == "(":
                expr = self.parse_expr()
                self.expect(")", "to close the parenthesis")
                self._skip_nl -= 1
            elif tok.value == "[":
                expr = ListExpr(tok.line, self._items("]", tok))
            else:
                expr = self._object(tok)
            self._depth -= 1
            return expr
        raise self.error(f"expected an expression, found {_describe(tok)}", tok)

    def _items(self, closing: str, start: Tok) -> list[Expr]:
        items: list[Expr] = []
        while not self.at(closing):
            if self.peek().kind == "ident" and self.peek().value == "for" and not items:
                raise self.error("for expressions are not supported in plans", start)
            items.append(self.parse_expr())
            if not self.at(","):
                break
            self.take()
        self.expect(closing, f"to close the list from line {start.line}")
        self._skip_nl -= 1
        return items

    def _object(self, start: Tok) -> ObjectExpr:
        items: list[tuple[Expr, Expr]] = []
        while not self.at("}"):
            tok = self.peek()
            key: Expr
            if tok.kind == "ident":
                self.take()
                key = Literal(tok.line, tok.value)
            else:
                key = self.parse_expr()
            if not (self.at("=") or self.at(":")):
                raise self.error(
                    f"expected '=' or ':' after an object key, found {_describe(self.peek())}",
                    self.peek(),
                )
            self.take()
            items.append((key, self.parse_expr()))
            if self.at(","):
                self.take()
        self.expect("}", f"to close the object from line {start.line}")
        self._skip_nl -= 1
        return ObjectExpr(start.line, items)

    def _call(self, name: str, start: Tok) -> Call:
        self._enter(start)
        self.take()
        self._skip_nl += 1
        args: list[Expr] = []
        while not self.at(")"):
            args.append(self.parse_expr())
            if not self.at(","):
                break
            self.take()
        self.expect(")", f"to close the call of {name}()")
        self._skip_nl -= 1
        self._depth -= 1
        return Call(start.line, name, args)

    def _template(self, start: Tok, quoted: bool) -> Expr:
        parts: list[str | Expr] = []
        while True:
            text, stop = self.lx.template_chunk(quoted)
            if text:
                parts.append(text)
            if stop != "${":
                break
            tok = Tok("punct", "${", self.lx.line_of(self.lx.pos))
            self._enter(tok)
            self._skip_nl += 1
            parts.append(self.parse_expr())
            # Take the "}" without peeking past it: the lexer must resume in template mode.
            self.expect("}", "to close ${ in the string")
            self._skip_nl -= 1
            self._depth -= 1
        if not parts:
            return Literal(start.line, "")
        if len(parts) == 1 and isinstance(parts[0], str):
            return Literal(start.line, parts[0])
        return Template(start.line, parts)
