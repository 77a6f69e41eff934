"""Property: whatever the text, parse_plan() returns a Plan or raises PlanError, nothing else."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudboot.plan import Plan, PlanError, parse_plan, render_cmdline

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
