"""Tests of the Harness expression language (R33 JEXL subset, R47 quoted segments)."""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notebook_pipelines.definition import expressions
from notebook_pipelines.definition.expressions import (
    Expression,
    Reference,
    is_expression,
    parse_condition,
    parse_template,
    truthy,
)
from notebook_pipelines.errors import ExpressionError

VALUES: dict[tuple[str, ...], Any] = {
    ("env",): "prod",
    ("n",): 5,
    ("s5",): "5",
    ("flag",): True,
    ("t",): "TRUE",
    ("f",): "false",
    ("yes",): "yes",
    ("none",): None,
    ("empty",): "",
    ("items",): ["a", "b", 3],
    ("pipeline", "variables", "env"): "prod",
    ("pipeline", "variables", "x-auth"): "token",
}


def resolve(ref: Reference) -> Any:
    return VALUES[ref.path]


def cond(text: str) -> Any:
    return parse_condition(text).evaluate(resolve)


def caret_column(err: ExpressionError) -> int:
    lines = str(err).splitlines()
    return lines[2].index("^") - 2


def test_module_doctests() -> None:
    result = doctest.testmod(expressions)
    assert result.attempted > 5 and result.failed == 0


# ------------------------------------------------------------------------------------ references


def test_R33_reference_path_text_and_position() -> None:
    expr = parse_condition('<+pipeline.variables.env> == "prod"')
    assert expr.references == (Reference(("pipeline", "variables", "env"), "<+pipeline.variables.env>", 0),)
    assert expr.evaluate(resolve) is True


def test_R33_references_listed_in_source_order_with_positions() -> None:
    text = '<+a.b> == "x" || (<+c> && <+d.e.f>.contains(<+g>))'
    refs = parse_condition(text).references
    assert [r.path for r in refs] == [("a", "b"), ("c",), ("d", "e", "f"), ("g",)]
    for ref in refs:
        assert text[ref.position :].startswith(ref.text)


def test_R33_step_output_reference_path() -> None:
    text = "<+pipeline.stages.S.spec.execution.steps.a.output.outputVariables.x>"
    (ref,) = parse_condition(text).references
    assert ref.path == (
        "pipeline",
        "stages",
        "S",
        "spec",
        "execution",
        "steps",
        "a",
        "output",
        "outputVariables",
        "x",
    )


@pytest.mark.parametrize(
    "text",
    [
        '<+pipeline.variables["x-auth"]>',
        "<+pipeline.variables['x-auth']>",
        '<+pipeline.variables.get("x-auth")>',
        '<+pipeline.variables[ "x-auth" ]>',
    ],
)
def test_R47_quoted_segment_forms_give_the_same_path(text: str) -> None:
    expr = parse_condition(text)
    assert [r.path for r in expr.references] == [("pipeline", "variables", "x-auth")]
    assert expr.evaluate(resolve) == "token"


def test_R47_quoted_segment_inside_wrapper_as_bare_path() -> None:
    expr = parse_condition('<+pipeline.variables.get("x-auth") == "token">')
    assert expr.references[0].path == ("pipeline", "variables", "x-auth")
    assert expr.evaluate(resolve) is True


def test_R33_reference_is_data_segments_never_getattr() -> None:
    seen: list[tuple[str, ...]] = []

    def spy(ref: Reference) -> str:
        seen.append(ref.path)
        return "x"

    assert parse_condition("<+pipeline.__class__>").evaluate(spy) == "x"
    assert parse_condition("<+pipeline.__class__.__init__.__globals__>").evaluate(spy) == "x"
    assert seen == [("pipeline", "__class__"), ("pipeline", "__class__", "__init__", "__globals__")]


def test_R33_reference_ends_at_first_closing_angle() -> None:
    assert cond("<+n>>3") is True  # <+n> > 3
    assert cond("<+n>>=6") is False


# -------------------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"a\\"b"', 'a"b'),
        ("'it\\'s'", "it's"),
        ('"tab\\tnew\\nline\\\\"', "tab\tnew\nline\\"),
        ('"\\u0041"', "A"),
        ("42", 42),
        ("2.5", 2.5),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("null", None),
        ('["a", "b", 1]', ["a", "b", 1]),
        ("[]", []),
        ("[[1], [2, [3]]]", [[1], [2, [3]]]),
    ],
)
def test_R33_literals(text: str, expected: Any) -> None:
    assert cond(text) == expected


# ------------------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 == 1", True),
        ("1 != 1", False),
        ('"a" == "a"', True),
        ('"a" != "b"', True),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 4", False),
        ("4 >= 4", True),
        ("1 + 2", 3),
        ("5 - 7", -2),
        ("3 * 4", 12),
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("7.0 / 2", 3.5),
        ("7 % 3", 1),
        ("-7 % 3", -1),
        ("7.5 % 2", 1.5),
        ('"a" + "b"', "ab"),
        ('"v" + 1', "v1"),
        ('"5" + 1', "51"),
        ('"5" * 2', 10),
        ("-<+n>", -5),
        ("!true", False),
        ("!!<+env>", True),
        ("true && false", False),
        ("true || false", True),
        ("<+env> eq 'prod' and not false", True),
        ("1 ne 2 or false", True),
        ("2 gt 1 and 1 lt 2 and 2 ge 2 and 2 le 2", True),
    ],
)
def test_R33_each_operator(text: str, expected: Any) -> None:
    result = cond(text)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 4 - 3", 3),
        ("12 / 2 / 3", 2),
        ("-2 * 3", -6),
        ("1 + 2 == 3", True),
        ("1 < 2 == true", True),
        ("true || false && false", True),
        ("(true || false) && false", False),
        ("false && true || true", True),
        ("!false && false", False),
        ("1 == 1 && 2 == 2", True),
        ("true ? 1 : 2 + 10", 1),
        ("false || true ? 'y' : 'n'", "y"),
    ],
)
def test_R33_precedence(text: str, expected: Any) -> None:
    assert cond(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true ? 'a' : 'b'", "a"),
        ("false ? 'a' : 'b'", "b"),
        ("false ? 'a' : true ? 'b' : 'c'", "b"),
        ("<+n> > 3 ? (<+n> > 4 ? 'big' : 'mid') : 'small'", "big"),
        ("<+f> ? 1 : 2", 2),
    ],
)
def test_R33_ternary(text: str, expected: Any) -> None:
    assert cond(text) == expected


# --------------------------------------------------------------------------------------- methods


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<+env>.contains("ro")', True),
        ('<+env>.startsWith("pr")', True),
        ('<+env>.endsWith("x")', False),
        ('"a,b,c".split(",")', ["a", "b", "c"]),
        ('"abc".split("")', ["a", "b", "c"]),
        ("<+env>.length()", 4),
        ("<+items>.size()", 3),
        ('"AbC".toLowerCase()', "abc"),
        ('"AbC".toUpperCase()', "ABC"),
        ('"  x ".trim()', "x"),
        ('<+env>.equals("prod")', True),
        ("<+s5>.equals(5)", False),
        ('<+items>.contains("b")', True),
        ("<+items>.contains('3')", True),
        ('" A,B ".trim().toLowerCase().split(",").length()', 2),
        ('"a,b".split(",").contains("b")', True),
    ],
)
def test_R33_methods(text: str, expected: Any) -> None:
    assert cond(text) == expected


@pytest.mark.parametrize("text", ['"x".getClass()', "[].__len__()", '<+env>.replace("a", "b")'])
def test_R33_unknown_method_rejected_at_parse_time(text: str) -> None:
    with pytest.raises(ExpressionError, match="unknown method") as info:
        parse_condition(text)
    assert text[info.value.position :].startswith(text.rsplit(".", 1)[1].split("(")[0])


def test_R33_unknown_method_hint_suggests_close_name() -> None:
    with pytest.raises(ExpressionError, match="did you mean 'startsWith'"):
        parse_condition('<+env>.startswith("p")')


def test_R33_method_arity_checked_at_parse_time() -> None:
    with pytest.raises(ExpressionError, match="takes 1 argument"):
        parse_condition("<+env>.contains()")


@pytest.mark.parametrize(("value", "kind"), [(5, "number"), (True, "boolean"), (None, "null")])
def test_R33_method_on_non_string_fails_at_call_position(value: Any, kind: str) -> None:
    text = "1 == 1 && <+x>.trim()"
    with pytest.raises(ExpressionError, match=kind) as info:
        parse_condition(text).evaluate(lambda ref: value)
    assert info.value.position == text.index("trim")


def test_R33_list_only_methods_reject_string_only_methods() -> None:
    with pytest.raises(ExpressionError, match="applies to strings"):
        cond("<+items>.trim()")


# ------------------------------------------------------------------------------------------ match


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<+env> =~ ["dev", "prod"]', True),
        ('<+env> =~ ["dev", "qa"]', False),
        ('<+env> !~ ["dev", "qa"]', True),
        ("<+s5> =~ [1, 5]", True),
        ('<+env> =~ "^pr.d$"', True),
        ('<+env> =~ "ro"', True),
        ('<+env> !~ "^dev"', True),
        ('<+none> =~ ".*"', False),
        ("<+n> =~ '^[0-9]+$'", True),
    ],
)
def test_R33_match_operator_list_membership_and_regex(text: str, expected: bool) -> None:
    assert cond(text) is expected


def test_R33_match_invalid_regex_is_expression_error() -> None:
    with pytest.raises(ExpressionError, match="invalid regular expression") as info:
        cond('<+env> =~ "("')
    assert info.value.position == 10  # the caret is under the pattern


_CATASTROPHIC = """
import sys
sys.path.insert(0, sys.argv[1])
from notebook_pipelines.definition.expressions import parse_condition

cond = parse_condition('<+pipeline.variables.x> =~ "^(a+)+$"')
for text in ("a" * 33 + "!", "a" * 99_999 + "!", "a" * 100_000):
    print(cond.evaluate(lambda ref: text))
"""


def test_regex_match_is_linear_time_for_catastrophic_pattern() -> None:
    # Python's re backtracks exponentially on ^(a+)+$ against "aaa…a!": 34 characters spin for
    # ever. RE2 answers in linear time; "finishes at all" is checked in a subprocess.
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", _CATASTROPHIC, root], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "True"]


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [
        (r"(a)\\1", "backreference"),
        ("(?P<x>a)(?P=x)", "named backreference"),
        ("^(?=prod)", "lookahead"),
        ("(?<!x)prod", "lookbehind"),
        ("(?>pr)od", "atomic group"),
        ("pro++d", "possessive quantifier"),
    ],
)
def test_regex_syntax_needing_backtracking_is_refused_with_a_caret_at_the_pattern(
    pattern: str, feature: str
) -> None:
    text = f'<+env> =~ "{pattern}"'
    with pytest.raises(ExpressionError, match=r"only linear-time \(RE2\) syntax is accepted") as info:
        cond(text)
    assert info.value.position == text.index('"'), feature
    assert info.value.expression == text
    assert str(info.value).endswith(f"\n  {text}\n  {' ' * text.index(chr(34))}^")


def test_regex_python_end_anchor_gets_a_hint() -> None:
    with pytest.raises(ExpressionError, match=r"write \$ or \\z for \\Z"):
        cond(r'<+env> =~ "prod\\Z"')
    assert cond(r'<+env> =~ "prod\\z"') is True


def test_regex_pattern_size_is_bounded() -> None:
    pattern = "a" * (expressions.MAX_PATTERN + 1)
    limit = expressions.MAX_PATTERN
    with pytest.raises(ExpressionError, match=f"regular expression too long .*limit {limit}"):
        cond(f'<+env> =~ "{pattern}"')
    assert cond(f'<+env> !~ "{"a" * expressions.MAX_PATTERN}"') is True


def test_R33_match_needs_list_or_string() -> None:
    with pytest.raises(ExpressionError, match="needs a list or a regex"):
        cond("<+env> =~ 5")


# -------------------------------------------------------------------------------------- coercion


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<+t> == true", True),  # "TRUE"
        ("<+f> == false", True),
        ("<+f> == true", False),
        ("<+yes> == true", False),  # other strings are unequal to booleans
        ("<+yes> == false", False),
        ("<+yes> != true", True),
        ('true == "true"', True),
        ("<+flag> == 'true'", True),
        ("<+flag> == 1", False),
        ("true == true", True),
    ],
)
def test_R33_string_boolean_comparison_rule(text: str, expected: bool) -> None:
    assert cond(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<+s5> == 5", True),
        ('"5.0" == 5', True),
        ('"abc" == 5', False),
        ("<+s5> > 4", True),
        ("<+s5> <= 4.5", False),
        ('"10" > 9', True),
        ('"10" > "9"', False),  # two strings compare lexicographically
        ('"b" > "a"', True),
        ("[1, '2'] == ['1', 2]", True),
    ],
)
def test_R33_numeric_string_coercion(text: str, expected: bool) -> None:
    assert cond(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null == null", True),
        ("<+none> == null", True),
        ("<+none> != null", False),
        ("<+none> == 0", False),
        ("<+none> == ''", False),
        ("<+none> < 1", False),
        ("<+none> >= 1", False),
        ("1 > null", False),
    ],
)
def test_R33_null_equality_and_relational(text: str, expected: bool) -> None:
    assert cond(text) is expected


@pytest.mark.parametrize("text", ["<+none> + 1", "-null", "null * 2", "'a' + null", "true + 1"])
def test_R33_arithmetic_on_null_or_boolean_is_error(text: str) -> None:
    with pytest.raises(ExpressionError, match=r"null|number"):
        cond(text)


@pytest.mark.parametrize("text", ["1 / 0", "1 % 0", "1.5 / 0", "2.5 % 0.0"])
def test_R33_division_by_zero_is_error(text: str) -> None:
    with pytest.raises(ExpressionError, match="division by zero"):
        cond(text)


def test_R33_relational_on_non_numeric_string_and_number_is_error() -> None:
    with pytest.raises(ExpressionError, match="needs numbers") as info:
        cond("<+env> > 3")
    assert info.value.position == 7


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("False", False),
        ("", False),
        ("x", True),
        (None, False),
        (0, False),
        (0.0, False),
        (3, True),
        ([], False),
        (["a"], True),
    ],
)
def test_R33_truthiness(value: Any, expected: bool) -> None:
    assert truthy(value) is expected
    assert parse_condition("<+x> ? 'T' : 'F'").evaluate(lambda ref: value) == ("T" if expected else "F")
    assert parse_condition("!<+x>").evaluate(lambda ref: value) is (not expected)
    assert parse_condition("<+x> && true").evaluate(lambda ref: value) is expected


# --------------------------------------------------------------------------------- short-circuit


@pytest.mark.parametrize(
    "text",
    [
        "false && <+boom>",
        "<+f> && <+boom>",
        "true || <+boom>",
        "true ? 1 : <+boom>",
        "false ? <+boom> : 2",
        "false && <+boom> && <+boom>.contains('x')",
    ],
)
def test_R33_short_circuit_does_not_resolve(text: str) -> None:
    def strict(ref: Reference) -> Any:
        assert ref.path != ("boom",), "short-circuit failed"
        return resolve(ref)

    parse_condition(text).evaluate(strict)


# ------------------------------------------------------------------------------- wrapper (outer)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('<+<+pipeline.variables.env> == "prod">', True),
        ('<+ <+env> == "dev" >', False),
        ("<+<+n> > 3>", True),
        ("<+<+n> > 3 && <+n> < 9>", True),
        ('<+<+env> == "prod"> && <+<+n> == 5>', True),
        ('<+<+env>.toUpperCase() == "PROD">', True),
        ('<+pipeline.variables.env == "prod">', True),
        ("<+env.length() == 4>", True),
        ("<+ env >", "prod"),
        ("<+<+env>>", "prod"),
        ("(<+<+n> - 1>) * 2", 8),
    ],
)
def test_R33_outer_wrapper_form_accepted(text: str, expected: Any) -> None:
    assert cond(text) == expected


def test_R33_wrapper_and_plain_forms_agree() -> None:
    plain = parse_condition('<+pipeline.variables.env> == "prod"')
    wrapped = parse_condition('<+<+pipeline.variables.env> == "prod">')
    assert [r.path for r in plain.references] == [r.path for r in wrapped.references]
    assert wrapped.references[0].position == 2


def test_R33_bare_name_outside_wrapper_is_error_with_hint() -> None:
    with pytest.raises(ExpressionError, match=r"did you mean '<\+pipeline.name>'") as info:
        parse_condition('<+a> == 1 && pipeline.name == "x"')
    assert info.value.position == 13


# ------------------------------------------------------------------------------------- templates


def test_R33_template_interpolates_values() -> None:
    tpl = parse_template("deploy <+pipeline.variables.env> n=<+n> ok=<+flag> none=<+none>")
    assert tpl.evaluate(resolve) == "deploy prod n=5 ok=true none=null"
    assert [r.position for r in tpl.references] == [7, 35, 43, 56]


def test_R33_template_renders_lists_like_harness() -> None:
    assert parse_template("items=<+items>").evaluate(resolve) == "items=[a, b, 3]"
    assert cond('"x" + [1, true, null]') == "x[1, true, null]"


def test_R33_template_single_reference_returns_raw_value() -> None:
    assert parse_template("<+items>").evaluate(resolve) == ["a", "b", 3]
    assert parse_template("<+n>").evaluate(resolve) == 5
    assert parse_template("<+none>").evaluate(resolve) is None
    assert parse_template(" <+n>").evaluate(resolve) == " 5"


def test_R33_template_with_embedded_expression() -> None:
    tpl = parse_template("name=<+<+env>.toUpperCase()>, next=<+<+n> + 1>!")
    assert tpl.evaluate(resolve) == "name=PROD, next=6!"
    assert [r.path for r in tpl.references] == [("env",), ("n",)]
    assert parse_template("<+<+n> * 2>").evaluate(resolve) == 10


def test_R33_template_first_angle_closes_embedded_expression() -> None:
    assert parse_template("<+<+n> + 1> > 3 it's fine").evaluate(resolve) == "6 > 3 it's fine"
    assert parse_template("<+(<+n> > 3)>").evaluate(resolve) is True
    assert parse_template("<+<+n> gt 3>").evaluate(resolve) is True


def test_R33_template_without_references_is_unchanged() -> None:
    tpl = parse_template("a > b && 'c'")
    assert tpl.references == () and tpl.evaluate(resolve) == "a > b && 'c'"
    assert parse_template("").evaluate(resolve) == ""


def test_R33_template_unterminated_reference_is_error() -> None:
    with pytest.raises(ExpressionError, match="unterminated '<\\+'") as info:
        parse_template("hello <+pipeline.name")
    assert info.value.position == 6


def test_R33_is_expression() -> None:
    assert is_expression("x <+a>") and is_expression("<+")
    assert not is_expression("a + b") and not is_expression(None) and not is_expression(["<+a>"])


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ('<+a> == "prod', 8, "unterminated string"),
        ("<+a> == 'x", 8, "unterminated string"),
        ("<+a.b", 0, "unterminated '<\\+'"),
        ('<+a> == "x" && <+b', 15, "unterminated '<\\+'"),
        ('<+a> = "x"', 5, "did you mean '=='"),
        ("<+a> & <+b>", 5, "did you mean '&&'"),
        ("<+a> | <+b>", 5, "did you mean '\\|\\|'"),
        ("<+a> ==", 7, "unexpected end"),
        ("<+a> == 1 )", 10, "unexpected '\\)'"),
        ("(<+a> == 1", 10, "missing '\\)'"),
        ("<+a> 'x'", 5, "expected an operator"),
        ("== 1", 0, "expected a value"),
        ("true ? 1", 8, "expected ':'"),
        ("[1, 2", 5, "expected ',' or ']'"),
        ("<+a> == #", 8, "unexpected character '#'"),
        ("${7*7}", 0, "not Harness syntax"),
        ('"a".__class__', 4, "property access"),
        ("<+a>.b.trim()", 5, "property access"),
        ("   ", 0, "empty expression"),
        ("", 0, "empty expression"),
        ("1" * 400, 0, "number literal too long"),
    ],
)
def test_R33_parse_error_caret_points_at_problem(text: str, position: int, message: str) -> None:
    with pytest.raises(ExpressionError, match=message) as info:
        parse_condition(text)
    assert info.value.position == position
    assert info.value.expression == text
    if text.strip():
        assert caret_column(info.value) == position


def test_R33_error_message_caret_line_layout() -> None:
    with pytest.raises(ExpressionError) as info:
        parse_condition('<+a> == "prod" && <+b> = 1')
    lines = str(info.value).splitlines()
    assert lines[0] == "unexpected '=' (did you mean '=='?) at position 23:"
    assert lines[1] == '  <+a> == "prod" && <+b> = 1'
    assert lines[2] == "  " + " " * 23 + "^"


def test_R33_lookup_error_from_resolve_becomes_expression_error() -> None:
    text = 'true && <+pipeline.variables.missing> == "x"'

    def missing(ref: Reference) -> Any:
        raise KeyError("missing")

    with pytest.raises(ExpressionError, match=r"cannot resolve <\+pipeline\.variables\.missing>") as info:
        parse_condition(text).evaluate(missing)
    assert info.value.position == 8 and info.value.expression == text
    assert caret_column(info.value) == 8
    assert isinstance(info.value.__cause__, KeyError)


def test_R33_lookup_error_in_template_points_at_reference() -> None:
    def missing(ref: Reference) -> Any:
        raise LookupError()

    with pytest.raises(ExpressionError) as info:
        parse_template("a <+b> <+c>").evaluate(lambda ref: "v" if ref.path == ("b",) else missing(ref))
    assert info.value.position == 7


def test_R33_expression_error_from_resolve_passes_through() -> None:
    original = ExpressionError("custom", "other", 1, fqn="pipeline.x")

    def failing(ref: Reference) -> Any:
        raise original

    with pytest.raises(ExpressionError) as info:
        parse_condition("<+a>").evaluate(failing)
    assert info.value is original


def test_R33_nesting_depth_limited() -> None:
    deep = "(" * 150 + "1" + ")" * 150
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_condition(deep)
    assert parse_condition("(" * 50 + "1" + ")" * 50).evaluate(resolve) == 1
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_condition("!" * 500 + "true")
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_condition("[" * 500)


def test_R33_long_operator_chains_do_not_recurse() -> None:
    chain = " + ".join(["1"] * 2000)
    assert parse_condition(chain).evaluate(resolve) == 2000
    assert parse_condition("&&".join(["true"] * 1500)).evaluate(resolve) is True
    assert parse_condition('"a"' + ".trim()" * 1000).evaluate(resolve) == "a"


def test_R33_expression_length_limited() -> None:
    with pytest.raises(ExpressionError, match="too long"):
        parse_condition("1 + " * 3000 + "1")


def test_R33_huge_numbers_are_errors_not_crashes() -> None:
    with pytest.raises(ExpressionError, match="too large"):
        parse_condition(" * ".join(["99999999999"] * 500)).evaluate(resolve)


def test_R33_non_string_text_is_type_error() -> None:
    with pytest.raises(TypeError):
        parse_condition(True)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ caching


def test_R33_parsing_is_cached_and_evaluation_does_not_reparse(monkeypatch: pytest.MonkeyPatch) -> None:
    text = '<+env> == "prod" && <+n> > 1'
    expr = parse_condition(text)
    assert parse_condition(text) is expr
    tpl = parse_template("x <+<+n> + 1>")

    class NoParser:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("re-parsed")

    monkeypatch.setattr(expressions, "_Parser", NoParser)
    for _ in range(3):
        assert expr.evaluate(resolve) is True
        assert tpl.evaluate(resolve) == "x 6"
    assert isinstance(expr, Expression) and expr.kind == "condition" and tpl.kind == "template"


# ------------------------------------------------------------------------------------- security


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('x')",
        "<+__import__('os').system('x')>",
        '"a".__class__',
        "${7*7}",
        '"x".getClass()',
        "[].__len__()",
        "<+a>.__class__",
        "<+a>.__class__.__mro__",
        "open('/etc/passwd')",
        "<+exec('x')>",
        "lambda: 1",
    ],
)
def test_R33_injection_attempts_are_rejected(text: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_condition(text)
    assert 0 <= info.value.position <= len(text)


def test_R33_no_eval_exec_or_getattr_in_module_source() -> None:
    source = Path(expressions.__file__).read_text(encoding="utf-8")
    code = source.split('"""', 2)[2]  # skip the module docstring, which names them
    banned = re.compile(r"(?<![\w.])(eval|exec|compile|getattr|setattr|__import__|literal_eval)\(")
    assert banned.findall(code) == []


# ---------------------------------------------------------------------------------- properties

TOKENS = [
    "<+",
    ">",
    "(",
    ")",
    '"',
    "'",
    "==",
    "&&",
    "||",
    "!",
    "?",
    ":",
    "a",
    "pipeline",
    "__import__",
    ".",
    "1",
    "2.5",
    "${",
    "}",
    "[",
    "]",
    ",",
    "=~",
    "contains",
    "trim()",
    "get",
    " ",
    "-",
    "+",
    "*",
    "/",
    "%",
    "true",
    "null",
    "\\",
    "<",
    "=",
    "not",
    "x-y",
]


def _soup_resolve(ref: Reference) -> str:
    return "v." + ".".join(ref.path)


@settings(deadline=None, max_examples=300)
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_R33_property_token_soup_parses_or_raises_expression_error(text: str) -> None:
    for parse in (parse_condition, parse_template):
        try:
            expr = parse(text)
        except ExpressionError as exc:
            assert exc.position is not None and 0 <= exc.position <= len(text)
            continue
        try:
            expr.evaluate(_soup_resolve)
        except ExpressionError as exc:
            assert exc.position is not None and 0 <= exc.position <= len(text)


@settings(deadline=None, max_examples=100)
@given(st.text(max_size=60))
def test_R33_property_arbitrary_text_never_crashes(text: str) -> None:
    for parse in (parse_condition, parse_template):
        try:
            parse(text).evaluate(_soup_resolve)
        except ExpressionError:
            pass


@settings(deadline=None, max_examples=100)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_R33_property_string_literal_roundtrip(value: str) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    assert parse_condition(f'"{escaped}"').evaluate(resolve) == value


LEAVES = st.sampled_from(
    ["1", "2.5", "0", '"a"', "'5'", "true", "false", "null", "<+x>", "<+y.z>", "[1, 'b']"]
)
BINARY = ["||", "&&", "==", "!=", "=~", "!~", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", " and ", " or "]
METHODS = [".trim()", ".length()", '.contains("a")', '.split(",")', ".toUpperCase()", '.equals("a")']


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(BINARY), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        children.map(lambda c: f"!{c}"),
        children.map(lambda c: f"-{c}"),
        st.tuples(children, st.sampled_from(METHODS)).map(lambda t: f"{t[0]}{t[1]}"),
        children.map(lambda c: f"(<+{c} == 1>)"),
    )


WELL_FORMED = st.recursive(LEAVES, _combine, max_leaves=12)


@settings(deadline=None, max_examples=300)
@given(WELL_FORMED, st.sampled_from(["a", "5", "true", "", "a,b"]))
def test_R33_property_well_formed_expressions_parse_and_evaluate_safely(text: str, value: str) -> None:
    expr = parse_condition(text)  # must not raise: the grammar generated it
    assert all(r.path in (("x",), ("y", "z")) for r in expr.references)
    try:
        expr.evaluate(lambda ref: value)
    except ExpressionError as exc:
        assert exc.position is not None and 0 <= exc.position <= len(text)


@settings(deadline=None, max_examples=200)
@given(
    st.integers(-(10**6), 10**6), st.integers(-(10**6), 10**6), st.sampled_from(["+", "-", "*", "<", ">="])
)
def test_R33_property_integer_arithmetic_and_comparison_match_python(a: int, b: int, op: str) -> None:
    expected = {"+": a + b, "-": a - b, "*": a * b, "<": a < b, ">=": a >= b}[op]
    assert parse_condition(f"<+a> {op} {b}").evaluate(lambda ref: a) == expected
    assert parse_condition(f'"{a}" {op} {b}').evaluate(lambda ref: a) == (
        f"{a}{b}" if op == "+" else expected
    )


@settings(deadline=None, max_examples=200)
@given(st.integers(-1000, 1000), st.integers(-1000, 1000).filter(bool))
def test_R33_property_integer_division_truncates_like_java(a: int, b: int) -> None:
    quotient = parse_condition(f"{a} / {b}".replace("--", "- -")).evaluate(resolve)
    remainder = parse_condition(f"{a} % {b}".replace("--", "- -")).evaluate(resolve)
    assert quotient == int(a / b) and quotient * b + remainder == a


# -- values an expression builds are bounded, and built in linear time (issue 24 item 8) ----------
REPO = Path(__file__).resolve().parents[1]
_BIG_VALUES = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))  # 380 × 10 MB in one template: 3.8 GB
import notebook_pipelines as nbp
ref = "<+pipeline.variables.v>"
for size, when, inputs in [
    (2**20, " + ".join([ref] * 380) + ' == "x"', None),  # `when`: 53 s and 865 MB (quadratic)
    (10 * 2**20, None, {"x": ref * 380}),  # an input template
]:
    p = nbp.Pipeline("p", variables={"v": "x" * size})
    with p.stage("s") as s:
        s.step("a", when=when, inputs=inputs, run=lambda **_: None)
    try:
        trace = p.run(report=False)
        row = trace[trace["fqn"].str.endswith(".a")].iloc[0]
        print(f"{row.status}|{row.error_type}|{str(row.error).splitlines()[0]}", flush=True)
    except BaseException as err:
        print(f"{type(err).__name__}|-|{str(err)[:200]}", flush=True)
"""


def test_a_value_over_max_value_fails_the_step_naming_it_and_the_expression():
    done = subprocess.run(
        [sys.executable, "-c", _BIG_VALUES], capture_output=True, text=True, cwd=REPO, timeout=60
    )  # a hard timeout: the old evaluator copied the growing string at every `+`
    too_long = "the value is over 10,485,760 characters (limit 10,485,760): an expression builds no values"
    fqn = "pipeline.stages.s.spec.execution.steps.a"
    # 1 MB + 1 MB + …: the 11th `+` (after 10 references and a half) goes over; position 26 × 10 − 2
    assert done.stdout.splitlines() == [
        f"Failed|Unknown|{too_long} that large in {fqn} at position 258:",
        f"Failed|Unknown|input 'x': {too_long} that large in {fqn} at position 23:",
    ], done.stderr[-3000:]


def test_a_long_chain_of_concatenations_is_joined_once():
    # 2,000 references of 4 KB: 8 MB in the end; copied at each `+` it was 8 GB of copying
    condition = "+".join(["<+v>"] * 2000)
    value = parse_condition(condition).evaluate(lambda ref: "y" * 4096)
    assert value == "y" * (4096 * 2000)
    # the same values as a left-to-right fold: numbers add until a string, then everything joins
    assert parse_condition('1 + 2 + "a" + 3 + [1, true]').evaluate(lambda r: 0) == "3a3[1, true]"
    assert parse_condition('"a" + 1 == "a1" && 1 + 2 * 3 == 7').evaluate(lambda r: 0) is True
    with pytest.raises(ExpressionError, match="cannot concatenate null") as err:
        parse_condition('"a" + "b" + null').evaluate(lambda r: 0)
    assert err.value.position == 10


def test_a_list_rendered_as_text_is_bounded_and_never_rendered_whole():
    big = "z" * 2**20
    values = {("v",): big, ("items",): [big] * 1000}  # 1 GB as text
    resolve = lambda ref: values[ref.path]  # noqa: E731
    with pytest.raises(ExpressionError, match=r"the value is over 10,485,760 characters") as err:
        parse_template("all: <+items>").evaluate(resolve)
    assert err.value.position == 5
    with pytest.raises(ExpressionError, match=r"'-' needs numbers, got list of 1000 items"):
        parse_condition("<+items> - 1").evaluate(resolve)
    with pytest.raises(ExpressionError, match=r"split\(\) would make over 100,000 items"):
        parse_condition('<+v>.split("")').evaluate(resolve)
    with pytest.raises(ExpressionError, match=r"the value is over"):
        parse_condition("[<+v>, <+v>, <+v>, <+v>, <+v>, <+v>, <+v>, <+v>, <+v>, <+v>, <+v>] =~ 'z'").evaluate(
            resolve
        )


def test_the_values_built_for_one_step_share_one_bound():
    # 380 inputs `<+v>!` of a 1 MB variable built 380 MB; raw references build nothing and count not
    import notebook_pipelines as nbp

    p = nbp.Pipeline("p", variables={"v": "x" * 2**20})
    inputs = {f"i{k}": "<+pipeline.variables.v>!" for k in range(380)}
    inputs.update({f"raw{k}": "<+pipeline.variables.v>" for k in range(20)})
    with p.stage("s") as s:
        s.step("b", inputs={f"raw{k}": "<+pipeline.variables.v>" for k in range(20)}, run=lambda **_: None)
        s.step("a", inputs=inputs, run=lambda **_: None)
    trace = p.run(report=False)
    rows = trace.set_index(trace["fqn"].str.rsplit(".", n=1).str[-1])
    assert rows.loc["b", "status"] == "Success"  # 20 raw references: nothing built
    assert rows.loc["a", "status"] == "Failed"
    # each built value takes 1 MB + 1 of the 10 MB: the 10th input goes over (10 × 1,048,577 > 10 × 2**20)
    assert str(rows.loc["a", "error"]).startswith(
        "input 'i9': the values built for this step add up to over 10,485,760 characters (limit 10,485,760 "
        "per step)"
    )
