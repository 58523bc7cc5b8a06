"""PromQL helpers for the alert and dashboard tests.

Two checks of a query, both needed:

- ``promtool_errors``: the real PromQL parser (``promtool check rules`` on a
  generated rules file, one recording rule per query) says whether it parses.
- ``catalog_problems``: a small tokenizer finds every series selector, label
  matcher and grouping label, and checks them against
  ``worker.metrics.catalog``: a metric that is not in the catalog, a label its
  family does not carry, or a fixed label value outside the catalog's
  enumerations is a problem, even though Prometheus would happily return
  nothing for it.

``require_promtool`` skips a test on a machine without promtool, but fails it
under CI (the ``CI`` environment variable), where it must run.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from worker.metrics import catalog
from worker.metrics.catalog import Family
from worker.vendor.outcomes import DEAD_REASONS

ROOT = Path(__file__).resolve().parents[1]

# ---- promtool ----------------------------------------------------------------


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_promtool() -> str:
    """promtool's path; skip without it, but fail under CI, which installs it."""
    found = shutil.which("promtool")
    if found is not None:
        return found
    reason = "promtool is not on PATH (Debian/Ubuntu: apt-get install prometheus)"
    if in_ci():
        pytest.fail(f"{reason}: CI must run this test", pytrace=False)
    pytest.skip(reason)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )


_RULE_ERROR = re.compile(r'"(?P<record>query_\d+)": (?P<error>.*)$', re.MULTILINE)


def promtool_errors(queries: Mapping[str, str]) -> dict[str, str]:
    """The queries the real PromQL parser refuses, with its error, by their key.

    One rules file holds every query as a recording rule; ``promtool check
    rules`` reports each rule that does not parse by its record name.
    """
    keys = list(queries)
    rules = [{"record": f"query_{i}", "expr": queries[key]} for i, key in enumerate(keys)]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
        found = promtool("check", "rules", str(path))
    output = found.stdout + found.stderr
    errors = {keys[int(m["record"][6:])]: m["error"] for m in _RULE_ERROR.finditer(output)}
    if found.returncode != 0 and not errors:
        raise AssertionError(f"promtool check rules failed on no query in particular:\n{output}")
    if found.returncode == 0:
        assert f"SUCCESS: {len(rules)} rules found" in output, output
    return errors


# ---- the catalog's label values ------------------------------------------------

# Labels whose values the operator chooses (an account's name): any value goes.
FREE_LABELS = frozenset({"account"})
# Every other label of every family, with the values it can take.
LABEL_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("ozp_requests_total", "answer"): catalog.ANSWERS,
    ("ozp_permits_total", "result"): catalog.PERMIT_RESULTS,
    ("ozp_token_generations_total", "result"): catalog.GENERATION_RESULTS,
    ("ozp_outcomes_total", "outcome"): catalog.OUTCOMES,
    ("ozp_outcomes_total", "reason"): tuple(dict.fromkeys(r for _, r in catalog.OUTCOME_REASONS)),
    ("ozp_queue_jobs", "lane"): catalog.QUEUE_LANES,
    ("ozp_oldest_job_age_seconds", "lane"): catalog.AGED_LANES,
    ("ozp_dead_letters", "reason"): DEAD_REASONS,
    ("ozp_account_state", "state"): catalog.ACCOUNT_STATES,
}
HISTOGRAM_BUCKETS: dict[str, tuple[float, ...]] = {
    "ozp_request_duration_seconds": catalog.REQUEST_SECONDS_BUCKETS,
    "ozp_permit_wait_seconds": catalog.PERMIT_WAIT_SECONDS_BUCKETS,
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# ---- a tokenizer for PromQL ------------------------------------------------------

AGGREGATIONS = frozenset(
    ("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
     "topk", "quantile")
)  # fmt: skip
FUNCTIONS = frozenset((
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "exp", "floor", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time", "minute",
    "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate",
    "resets", "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp",
    "vector", "year"
))  # fmt: skip
# Functions whose string arguments name labels they create.
LABEL_MAKERS = frozenset({"label_replace", "label_join", "count_values"})
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
OPERATOR_WORDS = frozenset({"and", "or", "unless", "bool", "atan2", "offset"})
NUMBER_WORDS = frozenset({"inf", "nan"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\[\]]*\])
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w.]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_:]*|:[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|==|!=|>=|<=|[-+*/%^<>=(){},@])
    """,
    re.VERBOSE,
)
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class PromQLSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    at: int


def tokenize(expr: str) -> list[Token]:
    tokens, at = [], 0
    while at < len(expr):
        match = _TOKEN.match(expr, at)
        if match is None:
            raise PromQLSyntaxError(f"unexpected {expr[at : at + 10]!r} at {at} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), at))
        at = match.end()
    return tokens


def _unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    return codecs.decode(literal[1:-1], "unicode_escape")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass(frozen=True)
class Selector:
    name: str | None  # None: a selector by label matchers only
    matchers: tuple[Matcher, ...]
    enclosing: tuple[str, ...]  # the calls around it, outermost first: "sum", "rate", ...


@dataclass(frozen=True)
class Query:
    selectors: tuple[Selector, ...]
    grouping_labels: frozenset[str]  # by, without, on, ignoring, group_left/right
    made_labels: frozenset[str]  # created by label_replace / label_join / count_values
    functions: frozenset[str]


def parse(expr: str) -> Query:
    """The selectors, grouping labels and functions of a PromQL expression.

    Not a full parser (promtool is the judge of syntax): it walks the tokens,
    telling metric names from functions, keywords and label lists, and
    keeps the calls that enclose each selector.
    """
    tokens = tokenize(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()
    made: set[str] = set()
    functions: set[str] = set()
    calls: list[str] = []  # one entry per open parenthesis: a call's name, or ""
    pending = ""  # the call whose parenthesis comes next
    i = 0

    def peek(offset: int = 1) -> Token | None:
        return tokens[i + offset] if i + offset < len(tokens) else None

    def matchers(start: int) -> tuple[tuple[Matcher, ...], int]:
        """Parse `{label op "value", ...}` from the `{` at start; return the index after `}`."""
        found, j = [], start + 1
        while True:
            if j >= len(tokens):
                raise PromQLSyntaxError(f"unclosed {{ in {expr!r}")
            if tokens[j].text == "}":
                return tuple(found), j + 1
            label, op, value = tokens[j : j + 3]
            if label.kind != "ident" or op.text not in ("=", "!=", "=~", "!~"):
                raise PromQLSyntaxError(f"bad matcher at {label.at} in {expr!r}")
            if value.kind != "string":
                raise PromQLSyntaxError(f"matcher value not a string at {value.at} in {expr!r}")
            found.append(Matcher(label.text, op.text, _unquote(value.text)))
            j += 3
            if j < len(tokens) and tokens[j].text == ",":
                j += 1

    while i < len(tokens):
        token = tokens[i]
        following = peek()
        word = token.text.lower() if token.kind == "ident" else ""
        if token.kind == "ident" and word in GROUPING:
            if following is not None and following.text == "(":
                j = i + 2
                while j < len(tokens) and tokens[j].text != ")":
                    if tokens[j].kind == "ident":
                        grouping.add(tokens[j].text)
                    elif tokens[j].text != ",":
                        raise PromQLSyntaxError(f"bad label list at {tokens[j].at} in {expr!r}")
                    j += 1
                i = j + 1
                continue
        elif token.kind == "ident" and (word in OPERATOR_WORDS or word in NUMBER_WORDS):
            pass
        elif token.kind == "ident" and following is not None and following.text == "(":
            previous = tokens[i - 1].text if i else ""
            if word in AGGREGATIONS:  # keywords, in any case; functions are not
                pending = word
            elif token.text in FUNCTIONS or (token.text in ("start", "end") and previous == "@"):
                pending = token.text
            else:
                raise PromQLSyntaxError(f"unknown function {token.text!r} in {expr!r}")
            functions.add(pending)
        elif (
            word in AGGREGATIONS
            and following is not None
            and following.text.lower() in ("by", "without")
        ):
            # `sum by (x) (...)`: the body's parenthesis comes after the label list.
            pending = word
            functions.add(word)
        elif token.kind == "ident" or token.text == "{":
            name = token.text if token.kind == "ident" else None
            found: tuple[Matcher, ...] = ()
            after = i + 1 if name else i
            if after < len(tokens) and tokens[after].text == "{":
                found, after = matchers(after)
            for matcher in found:
                if matcher.label == "__name__" and matcher.op == "=":
                    name = name or matcher.value
            selectors.append(Selector(name, found, tuple(c for c in calls if c)))
            i = after
            continue
        elif token.text == "(":
            calls.append(pending)
            pending = ""
        elif token.text == ")":
            if not calls:
                raise PromQLSyntaxError(f"unbalanced ) at {token.at} in {expr!r}")
            calls.pop()
        elif token.kind == "string" and calls and calls[-1] in LABEL_MAKERS:
            value = _unquote(token.text)
            if _LABEL_NAME.fullmatch(value):
                made.add(value)
        i += 1
    if calls:
        raise PromQLSyntaxError(f"unclosed ( in {expr!r}")
    return Query(tuple(selectors), frozenset(grouping), frozenset(made), frozenset(functions))


# ---- checks against the catalog -----------------------------------------------------


def resolve(name: str) -> tuple[Family, str]:
    """The family a series name belongs to, and its histogram suffix ("" if none)."""
    family = catalog.BY_NAME.get(name)
    if family is not None:
        if family.kind == "histogram":
            series = ", ".join(name + suffix for suffix in HISTOGRAM_SUFFIXES)
            raise LookupError(f"{name} is a histogram: its series are {series}")
        return family, ""
    for suffix in HISTOGRAM_SUFFIXES:
        base = catalog.BY_NAME.get(name.removesuffix(suffix))
        if name.endswith(suffix) and base is not None and base.kind == "histogram":
            return base, suffix
    near = difflib.get_close_matches(name, list(catalog.BY_NAME), n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise LookupError(f"{name} is not in worker/metrics/catalog.py{hint}")


def label_values(family: Family, suffix: str, label: str) -> tuple[str, ...] | None:
    """The values a label of a family's series can take; None: any value."""
    if label == "le" and suffix == "_bucket":
        return ("+Inf", *(repr(float(b)) for b in HISTOGRAM_BUCKETS[family.name]))
    if label in FREE_LABELS:
        return None
    return LABEL_VALUES[(family.name, label)]


def _is_le(value: str, bounds: tuple[str, ...]) -> bool:
    try:
        return float(value) in {float(b) for b in bounds}
    except ValueError:
        return False


def _value_problem(where: str, matcher: Matcher, values: tuple[str, ...]) -> str | None:
    shown = ", ".join(repr(v) for v in values)
    if matcher.op in ("=", "!="):
        ok = matcher.value in values or (matcher.label == "le" and _is_le(matcher.value, values))
        return None if ok else f"{where}: {matcher.value!r} is not one of {shown}"
    alternatives = matcher.value.split("|")
    if all(re.fullmatch(r"[\w]*", alt) for alt in alternatives):
        unknown = [alt for alt in alternatives if alt not in values]
        return f"{where}: {', '.join(map(repr, unknown))} not one of {shown}" if unknown else None
    try:
        pattern = re.compile(matcher.value)
    except re.error as error:
        return f"{where}: bad regex {matcher.value!r}: {error}"
    if not any(pattern.fullmatch(v) for v in values):
        return f"{where}: {matcher.value!r} matches none of {shown}"
    return None


def catalog_problems(expr: str) -> list[str]:
    """Every way the expression strays from the catalog; empty when it does not."""
    try:
        query = parse(expr)
    except PromQLSyntaxError as error:
        return [str(error)]
    problems: list[str] = []
    known_labels: set[str] = set(query.made_labels)
    if not query.selectors:
        problems.append(f"no series selector in {expr!r}")
    for selector in query.selectors:
        if selector.name is None:
            problems.append(f"a selector without a metric name in {expr!r}")
            continue
        try:
            family, suffix = resolve(selector.name)
        except LookupError as error:
            problems.append(str(error))
            continue
        labels = set(family.labels) | ({"le"} if suffix == "_bucket" else set())
        known_labels |= labels
        for matcher in selector.matchers:
            if matcher.label == "__name__":
                continue
            where = f"{selector.name}{{{matcher.label}{matcher.op}{matcher.value!r}}}"
            if matcher.label not in labels:
                problems.append(f"{where}: {family.name} has no label {matcher.label!r}")
                continue
            values = label_values(family, suffix, matcher.label)
            problem = None if values is None else _value_problem(where, matcher, values)
            if problem is not None:
                problems.append(problem)
    for label in sorted(query.grouping_labels - known_labels):
        problems.append(f"grouping by {label!r}, a label none of the query's metrics carries")
    return problems


def unsummed_process_series(expr: str) -> list[str]:
    """Process-scope selectors not inside a sum: they would read one replica."""
    problems = []
    for selector in parse(expr).selectors:
        try:
            family, _ = resolve(selector.name or "")
        except LookupError:
            continue
        if family.scope == "process" and "sum" not in selector.enclosing:
            problems.append(f"{selector.name} is per process: sum it across replicas")
    return problems


# ---- Grafana's template variables -------------------------------------------------------

GRAFANA_VALUES: dict[str, str] = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__interval_ms": "60000",
    "__range": "6h",
    "__range_s": "21600",
    "__range_ms": "21600000",
    "account": "default",
    "datasource": "prometheus",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")


def variables(text: str) -> Iterator[str]:
    for match in _VARIABLE.finditer(text):
        yield match[1] or match[2] or match[3]


def substitute(text: str, values: Mapping[str, str] = GRAFANA_VALUES) -> str:
    """The query with every template variable replaced; an unknown one raises KeyError."""
    return _VARIABLE.sub(lambda m: values[m[1] or m[2] or m[3]], text)
