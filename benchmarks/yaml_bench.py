"""Benchmark: parsing a large config with lines, the old loader against okrsync.yamlsource.

    python benchmarks/yaml_bench.py                  # 5,000 key results, best of 5
    python benchmarks/yaml_bench.py --krs 500 --repeat 10

The config copies the shape of config/example.yaml (objectives of 10 key results over three
spreadsheet sources, the six key-result forms of the example in turn, every id unique). Each
loader parses the same text `--repeat` times; the best time is printed, with two references
that keep no lines: `yaml.load` with the pure-Python SafeLoader and with libyaml's CSafeLoader.
Both loaders' results are compared first, so the figures are for the same data and lines.

The old loader is okrsync/yamlsource.py as of commit bbd57d3 (PyYAML's pure-Python composer,
then a recursive walk constructing each scalar with a fresh SafeLoader), vendored below for
this comparison only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from okrsync.yamlsource import load_with_lines  # noqa: E402

HEAD = """\
period: 2026-Q4                      # default for every key result
sources:
  survey:  {type: spreadsheet, path: data/survey.csv}            # paths are relative to this file
  signups: {type: spreadsheet, path: data/signups.csv}
  metrics: {type: spreadsheet, path: data/checkout-metrics.xlsx}
objectives:
"""
OBJECTIVE = """\
  - id: objective-{o}
    title: Make checkout fast and reliable, part {o}
    owner: team-{team}
    key_results:
"""
KEY_RESULTS = [
    """\
      - id: kr-{n}-nps
        title: Raise checkout NPS from 30 to 45
        source: survey
        metric: {{cell: C7}}             # the NPS row of the survey export
        baseline: 30
        target: 45
""", """\
      - id: kr-{n}-p95
        title: Bring checkout p95 latency from 900 ms to 500 ms
        source: metrics
        metric: {{sheet: Latency, column: p95 ms, aggregate: last, where: {{service: checkout}}}}
        baseline: 900
        target: 500                    # lower is better: target < baseline
        unit: ms
""", """\
      - id: kr-{n}-success
        title: Lift checkout success rate from 95% to 98%
        source: metrics
        metric: {{sheet: Reliability, cell: B2}}     # a %-formatted cell reads as shown: 97.12
        baseline: 95
        target: 98
        unit: "%"
""", """\
      - id: kr-{n}-customers
        title: Win 600 self-serve customers this quarter
        source: signups
        metric: {{column: customers, aggregate: sum, where: {{channel: self-serve}}}}
        target: 600                    # baseline defaults to 0
""", """\
      - id: kr-{n}-revenue
        title: Book €60,000 of self-serve revenue
        source: signups
        metric: {{column: revenue, aggregate: sum, where: {{channel: self-serve}}}}
        target: 60000
        unit: EUR
""", """\
      - id: kr-{n}-weekly
        title: Reach 60 self-serve customers a week
        source: signups
        metric: {{column: customers, aggregate: last, where: {{channel: self-serve}}}}
        baseline: 30
        target: 60
        thresholds: {{at_risk: 0.15, off_track: 0.3}}
"""]


def config_text(krs: int, per_objective: int = 10) -> str:
    parts = [HEAD]
    for n in range(krs):
        if n % per_objective == 0:
            o = n // per_objective
            parts.append(OBJECTIVE.format(o=o, team=o % 7))
        parts.append(KEY_RESULTS[n % len(KEY_RESULTS)].format(n=n))
    return "".join(parts)


# --- the old loader (okrsync/yamlsource.py at bbd57d3), for comparison only -------------------

class _OldLoader(yaml.SafeLoader):
    pass


def _old_construct(node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _old_construct(key_node, path + ("<key>",), {})
            if key in result:
                raise ValueError(f"duplicate key `{key}`")
            lines[path + (key,)] = key_node.start_mark.line + 1
            result[key] = _old_construct(value_node, path + (key,), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_old_construct(item, path + (i,), lines) for i, item in enumerate(node.value)]
    loader = _OldLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def old_load_with_lines(text: str) -> tuple[Any, dict[tuple, int]]:
    node = yaml.compose(text, Loader=_OldLoader)
    if node is None:
        return None, {}
    lines: dict[tuple, int] = {}
    return _old_construct(node, (), lines), lines


# ---------------------------------------------------------------------------------------------

def best_of(fn: Callable[[str], Any], text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--krs", type=int, default=5000, help="key results in the generated config")
    parser.add_argument("--repeat", type=int, default=5, help="parses per loader; the best is printed")
    args = parser.parse_args()

    text = config_text(args.krs)
    new_data, new_lines = load_with_lines(text)
    old_data, old_lines = old_load_with_lines(text)
    if (new_data, new_lines) != (old_data, old_lines):
        sys.exit("the loaders disagree on this config: fix okrsync/yamlsource.py before comparing speed")
    values = len(new_lines)
    print(f"config: {args.krs:,} key results, {len(text.encode()) / 1e6:.2f} MB, {text.count(chr(10)):,} lines, "
          f"{values:,} keys and list items; libyaml: {yaml.__with_libyaml__}; best of {args.repeat}")
    old = best_of(old_load_with_lines, text, args.repeat)
    new = best_of(load_with_lines, text, args.repeat)
    rows = [("old load_with_lines (pure-Python compose, bbd57d3)", old),
            ("new load_with_lines (okrsync.yamlsource)", new),
            ("reference: yaml.load SafeLoader (no lines)", best_of(lambda t: yaml.load(t, yaml.SafeLoader), text, args.repeat))]
    if yaml.__with_libyaml__:
        rows.append(("reference: yaml.load CSafeLoader (no lines)",
                     best_of(lambda t: yaml.load(t, yaml.CSafeLoader), text, args.repeat)))
    for name, seconds in rows:
        print(f"  {name:52} {seconds:7.3f} s")
    print(f"summary old_s={old:.3f} new_s={new:.3f} speedup={old / new:.1f}x")


if __name__ == "__main__":
    main()
