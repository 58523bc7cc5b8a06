"""The reference in ``docs/`` against the code it describes: the documented
``XADD`` examples are jobs the real parser accepts, the Redis key table is
the key module's (both ways), the package map is the tree, and every relative
link in the docs and the README resolves inside the repository.

Offline and fast: no Redis, no network. A failure here means a page says
something the code no longer does; mend the page (or the code).
"""

from __future__ import annotations

import inspect
import itertools
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.queue import jobs
from worker.store import keys as keys_module
from worker.store.keys import LANES, AccountKeys

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "worker"
# The defaults the pages' examples are written with.
PREFIX, ACCOUNT = "ozp", "default"
# Stands in for a key's free part (a job id, a drain's tag) when keys are made.
SAMPLE = "sample-1"
# Any entry id of a plausible time: the parser reads its time when `enqueued` is absent.
ENTRY_ID = "1764950400000-0"

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_PLACEHOLDER = re.compile(r"(<[^<>]+>)")


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def fenced_blocks(text: str) -> Iterator[tuple[str, str]]:
    """The info string and body of every fenced code block."""
    for match in _FENCE.finditer(text):
        yield match.group(1).strip(), match.group(2)


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line), up to the next heading
    of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next(
        (
            i
            for i in range(start, len(lines))
            if re.match(rf"#{{1,{level}}} ", lines[i]) and not _inside_fence(lines, i)
        ),
        len(lines),
    )
    return "\n".join(lines[start:end])


def _inside_fence(lines: list[str], index: int) -> bool:
    return sum(line.startswith("```") for line in lines[:index]) % 2 == 1


def first_table(text: str) -> list[list[str]]:
    """The cells of the first Markdown table in ``text``, header and rule left out."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2, "no table found"
    return rows[2:]


def code_span(cell: str) -> str | None:
    """The text of a cell that is exactly one code span, else None."""
    match = re.fullmatch(r"`([^`]+)`", cell)
    return match.group(1) if match else None


# --- the wire format ---------------------------------------------------------


def xadd_examples() -> list[list[str]]:
    """Every line of a code block in wire-format.md that runs XADD, as words."""
    examples = []
    for _, body in fenced_blocks(read("wire-format.md")):
        for line in body.splitlines():
            if "XADD" in line:
                examples.append(shlex.split(line))
    return examples


@pytest.mark.parametrize("words", xadd_examples(), ids=lambda words: " ".join(words)[:60])
def test_a_documented_xadd_is_a_job_the_workers_send(words: list[str]) -> None:
    at = [word.upper() for word in words].index("XADD")
    key, entry_id, *pairs = words[at + 1 :]
    producer_lanes = {AccountKeys(PREFIX, ACCOUNT).lane(lane) for lane in ("urgent", "bulk")}
    assert key in producer_lanes, f"{key!r} is not a producer's lane"
    assert entry_id == "*", "let Redis choose the entry id"
    assert len(pairs) % 2 == 0, "fields and values must pair up"
    fields = dict(zip(pairs[::2], pairs[1::2], strict=True))
    assert len(fields) == len(pairs) // 2, "a field is given twice"

    job = jobs.from_fields(fields, ENTRY_ID)

    # Sendable: nothing the workers would dead-letter before spending a permit.
    assert jobs.unsendable_reason(job) is None
    assert (job.id, job.campaign, job.phone, job.name) == (
        fields["id"],
        fields["campaign"],
        fields["phone"],
        fields.get("name", ""),
    )


def test_wire_format_shows_xadd_examples_for_both_producer_lanes() -> None:
    examples = xadd_examples()
    shown = {words[[w.upper() for w in words].index("XADD") + 1] for words in examples}
    assert shown == {AccountKeys(PREFIX, ACCOUNT).lane(lane) for lane in ("urgent", "bulk")}


def test_the_field_table_names_every_wire_field_and_no_other() -> None:
    every_optional = jobs.Job(
        id="a",
        campaign="c",
        phone="12345",
        name="n",
        enqueued_ms=jobs.MIN_EPOCH_MS,
        attempts=1,
        replay_of="b",
    )
    # `sent` is written by retries and reclaims, outside the Job type.
    known = {*every_optional.to_fields(), "sent"}
    rows = first_table(section(read("wire-format.md"), "## A job on its lane (version 1)"))
    documented = {code_span(row[0]) for row in rows}
    assert documented == known


# --- the Redis layout --------------------------------------------------------


def _sample_arguments(function: Callable[..., Any], skip: int) -> Iterator[tuple[str, ...]]:
    """Argument tuples for ``function``: every lane for a Lane, else a sample."""
    choices: list[tuple[str, ...]] = []
    for parameter in list(inspect.signature(function).parameters.values())[skip:]:
        if parameter.name == "prefix":
            choices.append((PREFIX,))
        elif parameter.annotation in ("Lane", keys_module.Lane):
            choices.append(tuple(LANES))
        else:
            choices.append((SAMPLE,))
    yield from itertools.product(*choices)


def account_keys() -> set[str]:
    """Every key an account's ``AccountKeys`` makes: each property, and each
    method called with sample arguments."""
    account = AccountKeys(PREFIX, ACCOUNT)
    made: set[str] = set()
    for name, member in inspect.getmembers(AccountKeys):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            value = getattr(account, name)
            if isinstance(value, str):
                made.add(value)
        elif inspect.isfunction(member):
            for arguments in _sample_arguments(member, skip=1):
                made.add(member(account, *arguments))
    return made


def module_keys() -> set[str]:
    """Keys made by the key module's own functions (those outside any account)."""
    made: set[str] = set()
    for _, function in inspect.getmembers(keys_module, inspect.isfunction):
        if function.__module__ == keys_module.__name__:
            for arguments in _sample_arguments(function, skip=0):
                made.add(function(*arguments))
    return made


def documented_patterns() -> list[str]:
    rows = first_table(section(read("redis-layout.md"), "## Every key"))
    patterns = [code_span(row[0]) for row in rows]
    assert all(patterns), "every row's first cell is one key pattern in backticks"
    return [pattern for pattern in patterns if pattern]


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """``<prefix>`` and ``<account>`` as the examples' values; any other
    placeholder (a job id, a tag) as any text."""
    parts = []
    for part in _PLACEHOLDER.split(pattern):
        if part == "<prefix>":
            parts.append(re.escape(PREFIX))
        elif part == "<account>":
            parts.append(re.escape(ACCOUNT))
        elif _PLACEHOLDER.fullmatch(part):
            parts.append(".+")
        else:
            parts.append(re.escape(part))
    return re.compile("".join(parts))


def test_every_documented_key_is_one_the_key_module_makes() -> None:
    made = account_keys() | module_keys()
    for pattern in documented_patterns():
        regex = pattern_regex(pattern)
        assert any(regex.fullmatch(key) for key in made), (
            f"{pattern} is documented, but worker/store/keys.py makes no such key"
        )


def test_every_key_the_key_module_makes_is_documented() -> None:
    regexes = [pattern_regex(pattern) for pattern in documented_patterns()]
    for key in sorted(account_keys() | module_keys()):
        assert any(regex.fullmatch(key) for regex in regexes), (
            f"{key} is made by worker/store/keys.py but missing from docs/redis-layout.md"
        )


def test_every_account_key_carries_the_accounts_hash_tag() -> None:
    for key in account_keys():
        assert key.startswith(f"{PREFIX}:{{{ACCOUNT}}}:"), key


# --- the package map ---------------------------------------------------------


def package_map() -> tuple[set[Path], dict[Path, Path]]:
    """The paths the architecture page's map lists, and for each Lua script the
    module listed above it (the one that loads it)."""
    blocks = [
        body
        for info, body in fenced_blocks(section(read("architecture.md"), "## Package layout"))
        if info == "text"
    ]
    assert len(blocks) == 1, "one text block holds the map"
    listed: set[Path] = set()
    loaders: dict[Path, Path] = {}
    directories: list[tuple[int, Path]] = []
    modules: list[tuple[int, Path]] = []
    for line in blocks[0].splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        name = line.split()[0]
        while directories and directories[-1][0] >= indent:
            directories.pop()
        while modules and modules[-1][0] >= indent:
            modules.pop()
        parent = directories[-1][1] if directories else ROOT
        path = parent / name.rstrip("/")
        listed.add(path)
        if name.endswith("/"):
            directories.append((indent, path))
            modules.clear()
        elif name.endswith(".lua"):
            assert modules, f"{name} is not listed under the module that loads it"
            loaders[path] = modules[-1][1]
        else:
            modules.append((indent, path))
    return listed, loaders


def test_every_path_the_map_lists_exists() -> None:
    listed, _ = package_map()
    missing = sorted(str(path.relative_to(ROOT)) for path in listed if not path.exists())
    assert not missing


def test_the_map_lists_every_subpackage_and_every_lua_script() -> None:
    listed, _ = package_map()
    subpackages = {init.parent for init in PACKAGE.rglob("__init__.py")}
    scripts = set(PACKAGE.rglob("*.lua"))
    unlisted = sorted(str(path.relative_to(ROOT)) for path in (subpackages | scripts) - listed)
    assert not unlisted


def test_each_lua_script_is_listed_under_the_module_that_loads_it() -> None:
    _, loaders = package_map()
    for script, module in loaders.items():
        # Scripts are loaded by their path under the package, e.g. "queue/fetch".
        name = script.relative_to(PACKAGE).with_suffix("").as_posix()
        assert f'"{name}"' in module.read_text(encoding="utf-8"), (
            f"{module.relative_to(ROOT)} does not load {name}.lua"
        )


# --- links -------------------------------------------------------------------


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def without_code(text: str) -> str:
    """The text with fenced blocks and code spans removed: links are not read there."""
    text = _FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings."""
    found = set()
    for line in _FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            text = heading.group(1).strip().lower().replace("`", "")
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text)))
    return found


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    for target in _LINK.findall(without_code(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto: and the like: not ours to check offline
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        assert resolved.is_relative_to(ROOT), f"{target} leaves the repository"
        assert resolved.exists(), f"{target} does not exist"
        if fragment and resolved.suffix == ".md":
            assert fragment in anchors(resolved), f"{target}: no such heading"
