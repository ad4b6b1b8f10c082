"""okrsync.yamlsource: data and lines as SafeLoader reads them, and hostile YAML refused with a line.

Every hostile case runs under libyaml and under the pure-Python fallback, and once through
`okr-sync validate` as a user meets it. Their times are measured by `pytest --durations`, not
asserted.
"""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from okrsync import yamlsource
from okrsync.yamlsource import MAX_ALIASED, MAX_BYTES, MAX_DEPTH, YamlSyntaxError, line_of, load_with_lines

LOADERS = [pytest.param(yaml.SafeLoader, id="pure-python")]
if yaml.__with_libyaml__:
    LOADERS.insert(0, pytest.param(yaml.CSafeLoader, id="libyaml"))


@pytest.fixture(params=LOADERS)
def loader(request, monkeypatch):
    monkeypatch.setattr(yamlsource, "_LOADER", request.param)
    return request.param


def billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, levels):
        name, prev = chr(97 + i), chr(96 + i)
        text += f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    return text


# (id, text, line of the error, words the message must hold)
HOSTILE = [
    ("impossible-date", "period:\n  start: 2026-02-30\n", 2, "`2026-02-30` is not a real date: day is out of range"),
    ("impossible-time", "at: 2026-01-01 25:00:00\n", 1, "`2026-01-01 25:00:00` is not a real date"),
    ("merge-key", "base: &b {k: 1}\nx:\n  <<: *b\n", 3, "merge keys `<<:` are not supported"),
    ("python-object", "x: !!python/object:os.system {}\n", 1, "tag `!!python/object:os.system` is not allowed"),
    ("python-name", "x: !!python/name:os.system\n", 1, "tag `!!python/name:os.system` is not allowed"),
    ("unknown-tag", "a: 1\nx: !foo bar\n", 2, "tag `!foo` is not allowed"),
    ("standard-tag", "x: !!str 12\n", 1, "tag `!!str` is not allowed"),
    ("deep-flow", "x: " + "[" * 500 + "]" * 500 + "\n", 1, f"nest more than {MAX_DEPTH} levels"),
    ("deep-unclosed", "x: " + "[" * 100_000 + "\n", 1, f"nest more than {MAX_DEPTH} levels"),
    ("deep-block", "".join("  " * i + "k:\n" for i in range(500)) + "  " * 500 + "v\n", MAX_DEPTH + 1,
     f"nest more than {MAX_DEPTH} levels"),
    ("billion-laughs", billion_laughs(), 5, f"aliases copy more than {MAX_ALIASED:,} values"),
    ("deep-through-aliases", "a: &a " + "[" * 40 + "1" + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n", 2,
     f"alias `*a` nests values more than {MAX_DEPTH} levels"),
    ("self-alias", "a: &a [1, *a]\n", 1, "alias `*a` is used inside its own anchor"),
    ("undefined-alias", "a: 1\nb: *nope\n", 2, "alias `*nope` has no anchor before it"),
    ("duplicate-anchor", "a: &x 1\nb: &x 2\n", 2, "anchor `&x` is defined twice (first on line 1)"),
    ("list-as-key", "? [a, b]\n: 1\n", 1, "a list or mapping is used as a key"),
    ("alias-list-as-key", "a: &a [1]\n? *a\n: 2\n", 2, "a list or mapping is used as a key"),
    ("duplicate-key", "a: 1\nb:\n  c: 1\n  c: 2\n", 4, "duplicate key `c`: keep only one"),
    ("two-documents", "a: 1\n---\nb: 2\n", 2, "a second YAML document (`---`) starts here"),
    ("yaml11-value-key", "a: =\n", 1, "`=` is a YAML 1.1 special value"),
    ("huge-integer", "x: " + "9" * 5000 + "\n", 1, "(5,000 characters) cannot be read as an integer"),
    ("syntax", "a: [1, 2\nb: 3\n", 2, "YAML syntax error"),
    ("control-character", "a: 1\nb: x\x07y\n", 2, "character '\\x07' is not allowed in YAML"),
]


@pytest.mark.parametrize("text,line,words", [pytest.param(*case[1:], id=case[0]) for case in HOSTILE])
def test_hostile_yaml_is_refused_with_its_line(loader, text, line, words):
    with pytest.raises(YamlSyntaxError) as caught:
        load_with_lines(text)
    assert (caught.value.line, words in caught.value.message) == (line, True), caught.value.message
    assert "\n" not in caught.value.message


def test_too_many_values_is_refused_with_its_line(loader, monkeypatch):
    monkeypatch.setattr(yamlsource, "MAX_NODES", 1000)  # the real limit is met the same way, only later
    fits = "x:\n" + "- 0\n" * (1000 - 3)  # the root mapping, `x` and the list are values too
    assert len(load_with_lines(fits)[0]["x"]) == 997
    with pytest.raises(YamlSyntaxError) as caught:
        load_with_lines(fits + "- 0\n")
    assert caught.value.line == 999
    assert "more than 1,000 values" in caught.value.message


def test_a_file_over_the_size_limit_is_refused_before_parsing():
    with pytest.raises(YamlSyntaxError) as caught:
        load_with_lines("x: '" + "é" * (MAX_BYTES // 2) + "'\n")  # under the limit in characters, over in bytes
    assert caught.value.line is None
    assert f"over the {MAX_BYTES // 1_000_000} MB limit" in caught.value.message


def test_aliases_within_the_budget_are_independent_copies_with_the_anchors_lines(loader):
    data, lines = load_with_lines("a: &x {b: [1, {c: 3}]}\nd: *x\ne:\n  - *x\n  - &s hi\n  - *s\n")
    assert data == {"a": {"b": [1, {"c": 3}]}, "d": {"b": [1, {"c": 3}]}, "e": [{"b": [1, {"c": 3}]}, "hi", "hi"]}
    data["d"]["b"][1]["c"] = 4
    assert data["a"]["b"][1]["c"] == 3 and data["e"][0]["b"][1]["c"] == 3
    assert (lines[("d",)], lines[("d", "b", 1, "c")], lines[("e", 0)], lines[("e", 0, "b")], lines[("e", 2)]) == (2, 1, 1, 1, 5)


def test_the_alias_budget_allows_exactly_its_size(loader):
    item = "[" + ", ".join(["0"] * 99) + "]"  # 100 values
    exact = f"a: &a {item}\nb: [" + ", ".join(["*a"] * (MAX_ALIASED // 100)) + "]\n"
    data, _ = load_with_lines(exact)
    assert len(data["b"]) == MAX_ALIASED // 100
    with pytest.raises(YamlSyntaxError) as caught:
        load_with_lines(exact.replace("[*a", "[*a, 1, *a"))
    assert caught.value.line == 2


def test_scalars_resolve_as_safe_loader_does_yaml_1_1_included(loader):
    text = ("notify:\n  on: [failure]\nflags: [yes, Off, ~, '']\nnums: [0x1f, 1_000, 017, 1:30, .inf, 3.5]\n"
            "day: 2026-10-01\nat: 2026-10-01T10:00:00Z\nquoted: ['2026-10-01', \"on\", '12']\nblock: |\n  text\n")
    data, _ = load_with_lines(text)
    assert data == yaml.load(text, Loader=yaml.SafeLoader)
    assert data["notify"] == {True: ["failure"]}  # config.py's _notify_on_key turns it back into `on`
    assert data["day"] == dt.date(2026, 10, 1) and data["quoted"] == ["2026-10-01", "on", "12"]


def test_lines_of_keys_and_list_items(loader):
    text = "period: 2026-Q4\nobjectives:\n  - id: o1\n    key_results:\n      - id: k1\n        metric:\n          cell: B7\n      - {id: k2}\n"
    data, lines = load_with_lines(text)
    assert data["objectives"][0]["key_results"][1] == {"id": "k2"}
    assert lines == {(): 1, ("period",): 1, ("objectives",): 2, ("objectives", 0): 3, ("objectives", 0, "id"): 3,
                     ("objectives", 0, "key_results"): 4, ("objectives", 0, "key_results", 0): 5,
                     ("objectives", 0, "key_results", 0, "id"): 5, ("objectives", 0, "key_results", 0, "metric"): 6,
                     ("objectives", 0, "key_results", 0, "metric", "cell"): 7, ("objectives", 0, "key_results", 1): 8,
                     ("objectives", 0, "key_results", 1, "id"): 8}
    assert line_of(lines, ("objectives", 0, "key_results", 0, "target")) == 5


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_file_is_none(loader, text):
    assert load_with_lines(text) == (None, {})


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="libyaml is not available")
def test_a_5000_key_result_config_is_within_the_limits():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from yaml_bench import config_text

    data, lines = load_with_lines(config_text(5000))
    assert sum(len(o["key_results"]) for o in data["objectives"]) == 5000
    assert lines[("objectives", 499, "key_results", 9, "target")] > 30_000


CLI_CASES = [c for c in HOSTILE if c[0] in {"impossible-date", "merge-key", "python-object", "unknown-tag",
                                               "deep-flow", "billion-laughs", "list-as-key", "huge-integer"}]


@pytest.mark.parametrize("text,line,words", [pytest.param(*case[1:], id=case[0]) for case in CLI_CASES])
def test_validate_prints_file_and_line_for_hostile_yaml(tmp_path, text, line, words):
    config = tmp_path / "okrs.yaml"
    config.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run([sys.executable, "-m", "okrsync.cli", "validate", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"{config}:{line}: " in done.stderr and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
