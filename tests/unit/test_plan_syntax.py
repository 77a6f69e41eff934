"""The HCL subset: syntax and expression evaluation, through the public parse_plan()."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from cloudboot.plan import PlanError, parse_plan


def local_value(expr: str, *, arch: str = "x86_64", lldp: dict[str, Any] | None = None,
                extra: str = "") -> Any:
    text = f"locals {{\n  {extra}\n  v = {expr}\n}}\n"
    return parse_plan(text, "t.hcl", arch=arch, lldp=lldp).locals["v"]


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ('"plain"', "plain"),
        ("42", 42),
        ("1.5", 1.5),
        ("2e3", 2000.0),
        ("true", True),
        ("null", None),
        ('"tab\\there \\"q\\" \\\\ \\u00e9"', 'tab\there "q" \\ é'),
        ('"$${not} %%{this}"', "${not} %{this}"),
        ('"{{.IP}}"', "{{.IP}}"),
        ('"${arch}-x"', "amd64-x"),
        ('"${1 + 2}"', 3),  # a lone interpolation keeps its type
        ('"n=${1 + 2}"', "n=3"),
        ('"${true}/${1.5}"', "true/1.5"),
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("6 / 2", 3),
        ("7 % 4", 3),
        ("-3 + 1", -2),
        ("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 4 == false", True),
        ("!true || false", False),
        ('1 == "1"', False),
        ("true == 1", False),
        ('[1, "a"] == [1, "a"]', True),
        ('{a = 1} != {a = 2}', True),
        ('arch == "amd64" ? "pc" : "other"', "pc"),
        ('false ? 1 : true ? 2 : 3', 2),
        ("[1, 2,\n 3,\n]", [1, 2, 3]),
        ('{ a = 1, "b" : 2\n c = [3] }', {"a": 1, "b": 2, "c": [3]}),
        ('{ amd64 = "x", arm64 = "y" }[arch]', "x"),
        ('{ k = { n = [10, 20] } }.k.n[1]', 20),
        ('join("-", ["a", 1, true])', "a-1-true"),
        ('upper("ab")', "AB"),
        ('lower("AB")', "ab"),
        ('contains(["a", "b"], "b")', True),
        ('lookup({a = 1}, "b", 7)', 7),
        ('coalesce(null, "", "z")', "z"),
        ('"${upper(arch)}"', "AMD64"),
        ('"a ${"nested ${arch}"} b"', "a nested amd64 b"),
    ],
)
def test_expressions(expr: str, value: Any) -> None:
    got = local_value(expr)
    assert got == value and type(got) is type(value)


def test_arch_is_the_go_name_for_every_alias() -> None:
    assert local_value("arch", arch="aarch64") == "arm64"
    assert local_value("arch", arch="armhf") == "arm"
    assert local_value("arch", arch="amd64") == "amd64"


def test_lldp_facts_and_missing_ones_read_as_null() -> None:
    facts = {"chassis": "sw1", "port": "7"}
    assert local_value('"${lldp.chassis}:${lldp["port"]}"', lldp=facts) == "sw1:7"
    assert local_value("lldp.switch == null", lldp=facts) is True
    assert local_value('lldp.rack == "r1" ? "a" : "b"') == "b"


def test_locals_refer_to_each_other_in_any_order() -> None:
    assert local_value('"${local.b}!"', extra='b = "${local.c}-b"\n  c = arch') == "amd64-b!"


def test_comments_heredocs_and_one_line_blocks() -> None:
    text = textwrap.dedent(
        """\
        # hash comment
        // slash comment
        /* block
           comment */ default_target = "a" # trailing
        locals {
          doc = <<EOT
        line ${arch}
          two
        EOT
          ind = <<-EOT
            x
              y
            EOT
        }
        target "a" { kernel = "k" }
        """
    )
    plan = parse_plan(text, "t.hcl", arch="x86_64")
    assert plan.locals == {"doc": "line amd64\n  two\n", "ind": "x\n  y\n"}
    assert plan.targets[0].kernel == "k" and plan.targets[0].line == 15


@pytest.mark.parametrize(
    ("body", "value"),
    [
        # The cases of hashicorp/hcl's specsuite (tests/expressions/heredoc.hcl), "flush" part.
        ("    Foo\n      Bar\n    Baz\n  ", "Foo\n  Bar\nBaz\n"),
        ("    Foo\n  Bar\n    Baz\n  ", "  Foo\nBar\n  Baz\n"),
        ("\tFoo\n  Bar\n  Baz\n  ", "Foo\n Bar\n Baz\n"),  # a tab is one space
        # Unicode spaces lead a line too, one each (here three spaces and two em spaces).
        ("   \u2003\u2003Foo\n    Bar\n    Baz\n  ", "\u2003Foo\nBar\nBaz\n"),
        ("Foo\n\nBar\n", "Foo\n\nBar\n"),
        # A line of spaces only is blank: it does not lower the cut, and stays as it is.
        ("    a\n  \n      \n    b\n  ", "a\n  \n      \nb\n"),
        ("  a\r\n \r\n  b\r\n", "a\r\n \r\nb\r\n"),
    ],
)
def test_flush_heredocs_cut_the_narrowest_lead(body: str, value: str) -> None:
    assert local_value(f"<<-EOT\n{body}EOT\n") == value


def test_crlf_and_bom_are_accepted() -> None:
    plan = parse_plan('\ufefftarget "a" {\r\n  kernel = "k"\r\n}\r\n', "t.hcl", arch="x86_64")
    assert plan.targets[0].kernel == "k"


BAD = [
    # (plan text, expected error)
    ('x = "abc\n', 't.hcl:1: unterminated string (a quoted string ends on its own line)'),
    ("x = 1 2\n", "t.hcl:1: expected a newline, found '2'"),
    ("\n\nx = \n", "t.hcl:3: expected an expression, found a newline"),
    ("x = [1,\n2\n", "t.hcl:3: expected ']' to close the list from line 1, found the end of the "
                     "file"),
    ("locals {\n a = 1\n", "t.hcl:3: expected '}' to close the \"locals\" block from line 1, "
                          "found the end of the file"),
    ("locals {\n a = 1\n a = 2\n}\n", 't.hcl:3: attribute "a" is set twice (first on line 2)'),
    ("/* open\n", "t.hcl:1: unterminated /* comment"),
    ("x = @\n", "t.hcl:1: unexpected character '@'"),
    ('x = "\\q"\n', "t.hcl:1: unknown escape \\q in string"),
    ('x = "\\uZZZZ"\n', "t.hcl:1: bad unicode escape \\uZZZZ"),
    # A surrogate is no character (HCL: "Cannot encode character U+d800 in UTF-8"); the str
    # chr() made of it broke str.encode() later, outside any PlanError.
    ('x = "\\ud800"\n', "t.hcl:1: bad unicode escape \\ud800"),
    ('x = "\\U0000DFFF"\n', "t.hcl:1: bad unicode escape \\U0000DFFF"),
    ('x = "%{ if true }"\n', "t.hcl:1: template directives %{...} are not supported in plans"),
    ("x = [for a in b: a]\n", "t.hcl:1: for expressions are not supported in plans"),
    ("x = a[*].b\n", "t.hcl:1: splat expressions [*] are not supported"),
    ("x = <<EOT\nabc\n", "t.hcl:1: heredoc EOT has no closing EOT line"),
    ("x = (1 ? 2)\n", "t.hcl:1: expected ':' in a conditional (cond ? a : b), found ')'"),
    ('target x y "z" = 1\n', "t.hcl:1: expected \"=\" or a block after \"target\", found '='"),
    ("= 1\n", "t.hcl:1: expected an attribute name or a block type, found '='"),
    ("x = " + "[" * 40 + "]" * 40 + "\n", "t.hcl:1: nesting deeper than 32 levels"),
    ("x = 1" + "9" * 5000 + "\n", "t.hcl:1: number 19999999999999999999... is too long"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(PlanError) as e:
        parse_plan(text, "t.hcl", arch="x86_64")
    assert str(e.value) == message


EVAL_BAD = [
    ("local.nope", 'local "nope" is not defined (locals: v)'),
    ("local.v", 'local "v" refers to itself'),
    ("local", '"local" needs an attribute, as in local.name'),
    ("foo", 'unknown variable "foo" (known: arch, lldp, local)'),
    ("self.name", 'unknown variable "self" (known: arch, lldp, local) '
                  "(self exists inside a target block)"),
    ('"a${null}"', "cannot put a null value into a string"),
    ('"a${[1]}"', "cannot put a list value into a string"),
    ('1 + "a"', "+ needs numbers, got a string"),
    ("1 && true", "&& needs a bool, got a number"),
    ("1 ? 2 : 3", "? needs a bool, got a number"),
    ("1 / 0", "division by zero (/)"),
    ("[1][1]", "index 1 is out of range (the list has 1)"),
    ('[1]["a"]', "a list index must be a whole number, not 'a'"),
    ("{a = 1}.b", "no attribute .b here (known: a)"),
    ('"s".b', "a string value has no attribute .b"),
    ("nope(1)", "unknown function nope() (plans know: coalesce, contains, join, lookup, lower, "
                "upper)"),
    ('lookup({a = 1}, "b")', "lookup(): no key 'b' (keys: a)"),
    ("upper(1)", "upper(): the argument must be a string, got a number"),
    ('{a = 1, a = 2}', 'object key "a" is set twice'),
    ("[1][1e999]", "a list index must be a whole number, not inf"),
    ("9" * 900 + " * " + "9" * 900, "number too large for *"),
]


@pytest.mark.parametrize(("expr", "message"), EVAL_BAD)
def test_evaluation_errors_carry_the_line(expr: str, message: str) -> None:
    with pytest.raises(PlanError) as e:
        local_value(expr)
    assert str(e.value) == f"t.hcl:3: {message}"
    assert (e.value.filename, e.value.line, e.value.target) == ("t.hcl", 3, None)
