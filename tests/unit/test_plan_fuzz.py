"""Property: whatever the text, parse_plan() returns a Plan or raises PlanError, nothing else.

And where python-hcl2 reads a document, it reads what our parser reads (the oracle below;
test_plan_syntax has its operator grouping and its refusals).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import hcl2
from hcl2 import SerializationOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudboot.plan import Plan, PlanError, parse_plan, render_cmdline
from cloudboot.plan.evaluate import Evaluator
from cloudboot.plan.parser import Body, parse

EXAMPLE = (Path(__file__).resolve().parents[2] / "docs" / "examples" / "plan.hcl").read_text()

# Fragments that reach deep into the lexer, parser and evaluator when glued together.
PIECES = [
    "target", '"t"', '"u"', "{", "}", "[", "]", "(", ")", "=", ",", ".", "?", ":", "!", "-",
    "+", "*", "/", "%", "==", "!=", "<", ">=", "&&", "||", "\n", " ", "#c\n", "/*", "*/",
    '"', "${", "$${", "%{", "\\", "\\u12", "<<EOT\n", "<<-EOT\n", "EOT\n", "arch", "local",
    "self", "lldp", "local.a", "self.name", "self.version", "null", "true", "1", "0", "1.5e3",
    "kernel", "index", "initrd", "modules", "disk", "subplan", "cmdline", "menu", "locals",
    "default_target", "dns", "timeout", "version", "device", '"/dev/vda"', "{{.IP}}",
    "{{.X}}", "join(", "lookup(", "for", "[*]", "a", "9" * 30,
]

SETTINGS = settings(max_examples=400, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    try:
        plan = parse_plan(text, "fuzz.hcl", arch="x86_64", lldp={"a": "b"})
    except PlanError as e:
        assert e.filename == "fuzz.hcl"
        assert str(e).startswith("fuzz.hcl")
        return
    assert isinstance(plan, Plan)
    for target in plan.targets:
        if target.cmdline:
            try:
                out = render_cmdline(target.cmdline, {})
            except PlanError as e:
                assert "placeholder" in e.message
            else:
                assert out == target.cmdline  # no placeholders: nothing to fill


@SETTINGS
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    check(text)


@SETTINGS
@given(st.lists(st.sampled_from(PIECES), max_size=60))
def test_token_soup(pieces: list[str]) -> None:
    check("".join(pieces))


@SETTINGS
@given(st.integers(0, len(EXAMPLE) - 1), st.integers(0, 40), st.text(max_size=8))
def test_mutated_example(at: int, cut: int, insert: str) -> None:
    check(EXAMPLE[:at] + insert + EXAMPLE[at + cut:])


def test_deep_chains_are_plan_errors_not_recursion_errors() -> None:
    operators = "locals {\n  x = " + "1 + " * 5000 + "1\n}\n"
    local_chain = "locals {\n" + "".join(
        f"  a{i} = local.a{i + 1}\n" for i in range(3000)) + "  a3000 = 1\n}\n"
    for text in (operators, local_chain):
        try:
            parse_plan(text, "deep.hcl", arch="x86_64")
        except PlanError as e:
            assert str(e) == "deep.hcl: expression nests too deeply"
        else:
            raise AssertionError("a 3000-deep chain should be refused")
    shallow = parse_plan("locals {\n  x = " + "1 + " * 50 + "1\n}\n", "ok.hcl", arch="x86_64")
    assert shallow.locals["x"] == 51


# -- python-hcl2 as a differential oracle ------------------------------------------------------
#
# The strategies build documents in the HCL subset both parsers read, each as a G: its text,
# what it means in a common form (want), and how to bring python-hcl2's output for that node
# into the common form (fix, for the deviations of python-hcl2 that are mended, not avoided).
# Our side is parse() and evaluate.py's Evaluator over SCOPE, where each reference evaluates
# to a marker of itself, so interpolations survive evaluation.
#
# The common form is python-hcl2 8.x's with the options DESIGN names (no comments, no block
# markers, values without quotes), heredocs as values and numbers expanded: blocks are lists
# of {label: {label: body}}, an interpolation reads "${ref}", and a literal "${" or "%{" keeps
# its escape "$${" / "%%{". python-hcl2 leaves those escapes as written, where the spec makes
# them "${" and "%{" (as our parser does: common() escapes our strings back). The other
# deviations of python-hcl2 are named where the generator mends or avoids them.

HCL2 = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True,
                            preserve_heredocs=False, preserve_scientific_notation=False)
ORACLE = settings(max_examples=120, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _mark(ref: str) -> str:
    return f"\ue000{ref}\ue001"


_MARKED = re.compile("\ue000(.*?)\ue001")
# A reference as written -> as python-hcl2 prints it inside "${...}".
REFS = {"v": "v", "self.name": "self.name", "lldp.port": "lldp.port", "nets[0]": "nets[0]",
        "nets[ 0 ]": "nets[0]", 'm["k"]': 'm["k"]', "a.b.c": "a.b.c"}
SCOPE = {"v": _mark("v"), "self": {"name": _mark("self.name")},
         "lldp": {"port": _mark("lldp.port")}, "nets": [_mark("nets[0]")],
         "m": {"k": _mark('m["k"]')}, "a": {"b": {"c": _mark("a.b.c")}}}


Fix = Callable[[Any], Any]


def _same(got: Any) -> Any:
    return got


class G(NamedTuple):
    src: str
    want: Any
    fix: Fix = _same


def common(value: Any) -> Any:
    if isinstance(value, str):
        text = value.replace("${", "$${").replace("%{", "%%{")
        return _MARKED.sub(lambda m: "${" + m.group(1) + "}", text)
    if isinstance(value, list):
        return [common(v) for v in value]
    if isinstance(value, dict):
        return {common(k): common(v) for k, v in value.items()}
    return value


def ours(text: str) -> dict[str, Any]:
    evaluator = Evaluator("oracle.hcl", SCOPE, None)

    def body(node: Body) -> dict[str, Any]:
        out = {a.name: common(evaluator.eval(a.expr)) for a in node.attributes}
        for block in node.blocks:
            inner: Any = body(block.body)
            for label in reversed(block.labels):
                inner = {common(label): inner}
            out.setdefault(block.type, []).append(inner)
        return out

    return body(parse(text, "oracle.hcl"))


def _dump(value: Any) -> str:  # == would take 1 for 1.0 and for True
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# Literal text. "{" comes only closed, in ATOMS: python-hcl2 reads "$${" only up to a "}"
# (its terminal is /\$\$\{[^}]*\}/) and fails on "$${" with none after it.
CHARS = [*"az AZ09.-_/:=,;'!?<>*+()[]@~^|&`#}", '"', "\\", "\t", "é", "ß", "漢", "😀",
         "\u00a0", "$", "%", "/*", "*/", "//"]
ATOMS = ["{a}", "{{.IP}}", "${a}", "%{a}"]
ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r"}
NAMES = st.from_regex(r"[a-z_][a-z0-9_-]{0,5}", fullmatch=True) | st.sampled_from(
    ["true", "null", "in", "if", "for", "endif"])  # no word is reserved for names in HCL
KEYWORDS = ("true", "false", "null", "for")  # not object keys: `for` starts a for expression
COMMENT = st.text(st.sampled_from([*"ab #/*{}\"'$=", "é", "\t"]), max_size=8)
LINE_COMMENT = st.tuples(st.sampled_from(["#", "//"]), COMMENT).map(lambda t: t[0] + t[1])


def _literal(extra: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from([*CHARS, *extra, *ATOMS]), max_size=6).map("".join)


@st.composite
def template(draw: st.DrawFn, extra: tuple[str, ...], refs: list[str]) -> list[tuple[str, str]]:
    """Parts ("lit", text) and ("ref", source), adjacent literals merged."""
    kinds = st.tuples(st.just("lit"), _literal(extra))
    if refs:
        kinds |= st.tuples(st.just("ref"), st.sampled_from(refs))
    parts: list[tuple[str, str]] = []
    for kind, part in draw(st.lists(kinds, max_size=4)):
        if kind == "lit" and parts and parts[-1][0] == "lit":
            parts[-1] = ("lit", parts[-1][1] + part)
        elif kind == "ref" and parts and parts[-1][0] == "lit" and parts[-1][1].endswith("$"):
            parts[-1] = ("lit", parts[-1][1] + "-")  # "$${" would be an escape, not "$" + "${"
            parts.append((kind, part))
        else:
            parts.append((kind, part))
    return parts


_ESCAPED_SEQ = re.compile(r"(\$\$\{[^}]*\}|%%\{[^}]*\})")


def _escaped(text: str) -> str:
    return text.replace("${", "$${").replace("%{", "%%{")


@st.composite
def quoted(draw: st.DrawFn, refs: bool = True) -> G:
    src, want = ['"'], []
    for kind, part in draw(template(("\n", "\r"), list(REFS) if refs else [])):
        if kind == "ref":
            pad = draw(st.sampled_from(["", " "]))
            src.append("${" + pad + part + pad + "}")
            want.append("${" + REFS[part] + "}")
            continue
        text = _escaped(part)
        want.append(text)
        for i, piece in enumerate(_ESCAPED_SEQ.split(text)):
            if i % 2:  # python-hcl2 takes "$${...}" whole, decoding no escape inside
                src.append(piece)
                continue
            src.extend(draw(_char(c)) for c in piece)
    return G("".join(src) + '"', "".join(want))


@st.composite
def _char(draw: st.DrawFn, c: str) -> str:
    if c in ESCAPES:
        return ESCAPES[c]
    if c == "\t":
        return draw(st.sampled_from(["\\t", "\t"]))
    # Not "$", "%" or "{": python-hcl2 decodes "\u0024{" to a "${" it then takes for an
    # interpolation (the spec: a literal "${", as we read it).
    if c not in "$%{" and draw(st.integers(0, 3)) == 0:
        forms = [f"\\U{ord(c):08X}"] + ([f"\\u{ord(c):04x}"] if ord(c) < 0x10000 else [])
        return draw(st.sampled_from(forms))
    return c


@st.composite
def heredoc(draw: st.DrawFn, nl: str) -> G:
    flush = draw(st.booleans())
    marker = draw(st.sampled_from(["EOT", "END", "X", "A_B2"]))
    src, want = [f"<<{'-' if flush else ''}{marker}{nl}"], []
    lines = []
    # python-hcl2 gives a heredoc's "${...}" as written, a quoted string's as it prints it.
    refs = [ref for ref, printed in REFS.items() if ref == printed]
    for lead, parts in draw(st.lists(st.tuples(st.integers(0, 3), template((), refs)),
                                     max_size=4)):
        text = "".join(_escaped(p) if k == "lit" else "${" + p + "}" for k, p in parts)
        means = "".join(_escaped(p) if k == "lit" else "${" + REFS[p] + "}" for k, p in parts)
        if flush:
            # python-hcl2 counts only U+0020 as indentation (hclsyntax: any Unicode space, a
            # tab too) and cuts blank lines as well (hclsyntax keeps them; python-hcl2 cuts
            # even the CR of an empty line): so no other lead, no lines of white space only,
            # and with CRLF no empty lines in <<- heredocs.
            text, means = text.lstrip(), means.lstrip()
            lead = lead if text else 0
            if not text and nl != "\n":
                continue
        if text.strip() == marker:
            continue
        lines.append((lead, means))
        src.append(" " * lead + text + nl)
    cut = min((lead for lead, means in lines if means), default=0) if flush else 0
    for lead, means in lines:
        want.append(" " * (lead - cut if means else lead) + means + nl)
    src.append(" " * draw(st.integers(0, 3)) + marker + nl)

    # python-hcl2 drops the last newline of a heredoc; the spec's heredoc ends with it
    # (specsuite heredoc.hcl: "Foo\nBar\nBaz\n"), as ours does.
    # And in <<- heredocs it writes every backslash and quote mark escaped (HeredocTrimTemplateRule
    # builds a quoted source form even when asked for values).
    def fix(got: Any) -> Any:
        if not isinstance(got, str):
            return got
        if flush:
            got = re.sub(r'\\(["\\])', r"\1", got)
        return got + nl if lines else got

    return G("".join(src), "".join(want), fix)


@st.composite
def number(draw: st.DrawFn) -> G:
    digits = st.text("0123456789", min_size=1, max_size=12)
    text = draw(digits)
    if draw(st.booleans()):
        text += "." + draw(digits)
    if draw(st.booleans()):
        text += draw(st.sampled_from(["e", "E", "e+", "E-"])) + draw(st.text("0123456789",
                                                                           min_size=1, max_size=2))
    value: int | float = float(text) if any(c in text for c in ".eE") else int(text)
    return G("-" + text, -value) if draw(st.booleans()) else G(text, value)


def _bare_ref(ref: str) -> G:
    printed = REFS[ref]
    # python-hcl2 prints a bare variable as its name, without the "${}" of other expressions.
    return G(ref, "${" + printed + "}",
             lambda got: "${" + got + "}" if got == printed and printed.isidentifier() else got)


def _gap(nl: str, inline: bool) -> st.SearchStrategy[str]:
    """What may stand between the items of a list or object (python-hcl2 takes comments there)."""
    gaps = st.sampled_from(["", " ", "  "]) | COMMENT.map(lambda c: f" /*{c.replace('*', '')}*/ ")
    if inline:
        return gaps
    return gaps | st.sampled_from([nl, nl + "  "]) | LINE_COMMENT.map(lambda c: f" {c}{nl}  ")


@st.composite
def value(draw: st.DrawFn, nl: str, depth: int = 0, inline: bool = False) -> G:
    kinds = ["quoted", "number", "word", "ref"] + ([] if inline else ["heredoc"])
    if depth < 3:
        kinds += ["list", "object"]
    kind = draw(st.sampled_from(kinds))
    if kind == "quoted":
        return draw(quoted())
    if kind == "number":
        return draw(number())
    if kind == "word":
        word = draw(st.sampled_from(["true", "false", "null"]))
        return G(word, {"true": True, "false": False, "null": None}[word])
    if kind == "ref":
        return _bare_ref(draw(st.sampled_from(list(REFS))))
    if kind == "heredoc":
        return draw(heredoc(nl))
    gap = _gap(nl, inline)
    if kind == "list":
        items = draw(st.lists(value(nl, depth + 1, inline), max_size=4))
        src = "[" + draw(gap)
        for i, item in enumerate(items):
            src += item.src + draw(gap)
            if i < len(items) - 1 or draw(st.booleans()):
                src += "," + draw(gap)
        fixes = [item.fix for item in items]

        def fix_list(got: Any) -> Any:
            if not (isinstance(got, list) and len(got) == len(fixes)):
                return got
            return [f(x) for f, x in zip(fixes, got, strict=True)]

        return G(src + "]", [item.want for item in items], fix_list)
    keys = draw(st.lists(st.one_of(
        NAMES.filter(lambda n: n not in KEYWORDS).map(lambda n: G(n, n)),
        quoted(),
        st.integers(0, 999).map(lambda n: G(str(n), str(n))),
    ), max_size=4, unique_by=lambda k: k.want))
    # HCL wants a comma or a newline between elements, and no newline before a comma.
    tight = _gap(nl, inline=True)
    src, want, by_key = "{" + draw(gap), {}, {}
    for i, key in enumerate(keys):
        item = draw(value(nl, depth + 1, inline))
        src += key.src + draw(st.sampled_from([" = ", "=", ": ", " : "])) + item.src
        want[key.want], by_key[key.want] = item.want, item.fix
        if i < len(keys) - 1 and not inline and draw(st.booleans()):
            src += draw(st.sampled_from([nl, nl + "  "]) | LINE_COMMENT.map(
                lambda c: " " + c + nl))
        elif i < len(keys) - 1 or draw(st.booleans()):
            src += draw(tight) + "," + draw(gap)
    src += draw(gap)

    def fix_object(got: Any) -> Any:
        if not isinstance(got, dict):
            return got
        return {k: by_key.get(k, _same)(v) for k, v in got.items()}

    return G(src + "}", want, fix_object)


def _fix_body(attributes: dict[str, Fix],
              blocks: dict[str, list[tuple[list[str], Fix]]]) -> Fix:
    def within(labels: list[str], fix: Fix, entry: Any) -> Any:
        if not labels:
            return fix(entry)
        if isinstance(entry, dict) and list(entry) == labels[:1]:
            return {labels[0]: within(labels[1:], fix, entry[labels[0]])}
        return entry

    def fix(got: Any) -> Any:
        if not isinstance(got, dict):
            return got
        out = {}
        for name, item in got.items():
            if name in attributes:
                out[name] = attributes[name](item)
            elif isinstance(item, list) and len(item) == len(blocks.get(name, ())):
                out[name] = [within(labels, f, entry)
                             for (labels, f), entry in zip(blocks[name], item, strict=True)]
            else:
                out[name] = item
        return out

    return fix


@st.composite
def body(draw: st.DrawFn, nl: str, depth: int = 0) -> G:
    """Attributes and blocks, one per line; block types are not attribute names, since
    python-hcl2 puts both in one dict. No inline comment between "=" and the value or between
    a block's type and labels: python-hcl2 takes /* */ only where a newline may stand."""
    indent = "  " * depth
    names = draw(st.lists(NAMES, unique=True, min_size=0, max_size=4))
    split = draw(st.integers(0, len(names))) if depth < 2 else len(names)
    items = [(n, 0) for n in names[:split]] + [
        (n, i + 1) for n in names[split:] for i in range(draw(st.integers(1, 2)))]
    src, want = [], {}
    attr_fixes: dict[str, Fix] = {}
    block_fixes: dict[str, list[tuple[list[str], Fix]]] = {}
    trailer = st.sampled_from(["", " /* c */"]) | LINE_COMMENT.map(lambda c: " " + c)
    for name, nth in draw(st.permutations(items)):
        for _ in range(draw(st.integers(0, 1))):
            src.append(draw(st.sampled_from(["", indent + "# note", indent + "/* a" + nl + " b */",
                                             indent + "// x"])) + nl)
        if nth == 0:
            item = draw(value(nl))
            src.append(indent + name + draw(st.sampled_from([" = ", "=", "   = "])) + item.src
                       + draw(trailer) + nl)
            want[name], attr_fixes[name] = item.want, item.fix
            continue
        labels = draw(st.lists(NAMES.map(lambda n: G(n, n)) | quoted(refs=False), max_size=2))
        head = indent + name + "".join(" " + label.src for label in labels) + " {"
        if draw(st.booleans()):  # a one-line block: at most one attribute, on the same line
            one = draw(st.none() | st.tuples(NAMES, value(nl, 1, inline=True)))
            inner = G("", {}) if one is None else G("", {one[0]: one[1].want},
                                                     _fix_body({one[0]: one[1].fix}, {}))
            src.append(head + ("}" if one is None else f" {one[0]} = {one[1].src} }}"))
        else:
            inner = draw(body(nl, depth + 1))
            src.append(head + draw(trailer) + nl + inner.src + indent + "}")
        src.append(draw(trailer) + nl)
        entry = inner.want
        for label in reversed(labels):
            entry = {label.want: entry}
        want.setdefault(name, []).append(entry)
        block_fixes.setdefault(name, []).append(([label.want for label in labels], inner.fix))
    return G("".join(src), want, _fix_body(attr_fixes, block_fixes))


@st.composite
def document(draw: st.DrawFn, nl: str) -> G:
    doc = draw(body(nl))
    src = doc.src
    if src.endswith(nl) and draw(st.booleans()):
        src = src[: -len(nl)]  # a file may end without a newline
    return G(src, doc.want, doc.fix)


@ORACLE
@given(st.sampled_from(["\n", "\r\n"]).flatmap(document))
def test_python_hcl2_reads_the_documents_as_we_do(doc: G) -> None:
    mine = _dump(ours(doc.src))
    theirs = _dump(doc.fix(hcl2.loads(doc.src, serialization_options=HCL2)))
    assert mine == theirs
    assert mine == _dump(doc.want)  # and both mean what the generator meant
