"""Tokens of the HCL native syntax subset a plan uses.

The lexer is lazy: the parser pulls one token at a time, and switches the lexer into template
mode after an opening quote, so ``"${ ... }"`` nests without a separate pass to find the end of
the string. Every token carries its line so errors can name it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from typing import NamedTuple

from cloudboot.plan.errors import PlanError

_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_HEREDOC = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_-]*)[ \t]*\r?\n")
_PUNCT2 = ("==", "!=", "<=", ">=", "&&", "||", "=>", "...")
_PUNCT1 = "{}[]()=,.?:!+-*/%<>"
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


class Tok(NamedTuple):
    kind: str  # ident number punct nl eof quote heredoc
    value: object
    line: int


class Lexer:
    def __init__(self, text: str, filename: str, first_line: int = 1) -> None:
        self.text = text
        self.filename = filename
        self.pos = 0
        self.first_line = first_line
        self._starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def line_of(self, pos: int) -> int:
        return bisect_right(self._starts, pos) - 1 + self.first_line

    def error(self, message: str, pos: int | None = None) -> PlanError:
        return PlanError(message, self.filename, self.line_of(self.pos if pos is None else pos))

    def _skip_blank(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c in " \t\r\ufeff":
                self.pos += 1
            elif c == "#" or text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated /* comment")
                self.pos = end + 2
            else:
                return

    def next(self) -> Tok:
        self._skip_blank()
        text, pos = self.text, self.pos
        line = self.line_of(pos)
        if pos >= len(text):
            return Tok("eof", None, line)
        c = text[pos]
        if c == "\n":
            self.pos += 1
            return Tok("nl", None, line)
        if c.isalpha() or c == "_":
            end = pos + 1
            while end < len(text) and (text[end].isalnum() or text[end] in "_-"):
                end += 1
            self.pos = end
            return Tok("ident", text[pos:end], line)
        m = _NUMBER.match(text, pos)  # ASCII digits only: str.isdigit() admits "²"
        if m is not None:
            self.pos = m.end()
            return Tok("number", _number(m.group(), self.error), line)
        if c == '"':
            self.pos += 1
            return Tok("quote", None, line)
        if c == "<" and text.startswith("<<", pos):
            return self._heredoc(line)
        for p in _PUNCT2:
            if text.startswith(p, pos):
                self.pos += len(p)
                return Tok("punct", p, line)
        if c in _PUNCT1:
            self.pos += 1
            return Tok("punct", c, line)
        raise self.error(f"unexpected character {c!r}")

    def _heredoc(self, line: int) -> Tok:
        m = _HEREDOC.match(self.text, self.pos)
        if m is None:
            raise self.error("a heredoc starts with <<MARKER or <<-MARKER and a newline")
        indent, marker = m.group(1) == "-", m.group(2)
        start = m.end()
        pos = start
        while pos < len(self.text):
            end = self.text.find("\n", pos)
            end = len(self.text) if end < 0 else end
            if self.text[pos:end].strip() == marker:
                body = self.text[start:pos]
                self.pos = pos + len(self.text[pos:end].rstrip())
                if indent:
                    body = _dedent(body)
                return Tok("heredoc", (body, self.line_of(start)), line)
            pos = end + 1
        raise self.error(f"heredoc {marker} has no closing {marker} line")

    def template_chunk(self, quoted: bool) -> tuple[str, str]:
        """Scan literal template text; stop at a closing quote, ``${`` or the end.

        Returns the text and what stopped it: '"', "${" or "eof".
        """
        text, n = self.text, len(self.text)
        out: list[str] = []
        while True:
            pos = self.pos
            if pos >= n:
                if quoted:
                    raise self.error("unterminated string")
                return "".join(out), "eof"
            c = text[pos]
            if quoted and c == '"':
                self.pos += 1
                return "".join(out), '"'
            if quoted and c == "\n":
                raise self.error("unterminated string (a quoted string ends on its own line)")
            if text.startswith("$${", pos) or text.startswith("%%{", pos):
                out.append(text[pos + 1 : pos + 3])
                self.pos += 3
            elif text.startswith("${", pos):
                self.pos += 2
                return "".join(out), "${"
            elif text.startswith("%{", pos):
                raise self.error("template directives %{...} are not supported in plans")
            elif quoted and c == "\\":
                out.append(self._escape())
            else:
                out.append(c)
                self.pos += 1

    def _escape(self) -> str:
        text, pos = self.text, self.pos
        c = text[pos + 1 : pos + 2]
        if c in _ESCAPES and c:
            self.pos += 2
            return _ESCAPES[c]
        if c in ("u", "U"):
            width = 4 if c == "u" else 8
            digits = text[pos + 2 : pos + 2 + width]
            if len(digits) == width and all(d in "0123456789abcdefABCDEF" for d in digits):
                code = int(digits, 16)
                # A surrogate is no character: chr() takes it, but the str could not be encoded
                # later (as HCL cannot: "Cannot encode character U+d800 in UTF-8").
                if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                    self.pos += 2 + width
                    return chr(code)
            raise self.error(f"bad unicode escape \\{c}{digits}")
        raise self.error(f"unknown escape \\{c} in string")


def _number(text: str, error: Callable[[str], PlanError]) -> int | float:
    if len(text) > 1000:  # and Python refuses int() of more than 4300 digits
        raise error(f"number {text[:20]}... is too long")
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


def _dedent(body: str) -> str:
    """The ``<<-`` rule as HCL applies it (hclsyntax's flushHeredocTemplateParts).

    Leading white space is any Unicode space, a tab counting as one, like a space; the
    narrowest lead among the lines with content is cut from each of them; a line of white
    space only is blank: it measures nothing and is kept as it is.
    """
    lines = body.split("\n")
    widths = [len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()]
    cut = min(widths, default=0)
    return "\n".join(ln[cut:] if ln.strip() else ln for ln in lines)
