"""A permanent adversarial suite of malformed configs (issue #11).

Each case changes one thing in a small valid config built on the example's data files and
runs `load_plan` in-process: it must raise ConfigError (nothing else), and every issue must
print on one line as `FILE:LINE: ...`, at the line the change is on unless the case says
otherwise, holding the words of the fix and no secret value. A few issues have no line
(`NO_LINE` lists them). A sample also goes through `okr-sync validate` as a user meets it.
YAML syntax cases live in tests/test_yamlsource.py and are not repeated here.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import EXAMPLE, REPO
from okrsync.config import load_plan
from okrsync.errors import ConfigError

DATA = Path(EXAMPLE).parent / "data"
SECRET = "s3cr3t-Value-9f8e7d"                 # a plain-text secret a case writes; never shown back
OUTSIDE_TEXT = "TOP-SECRET-PAYROLL"            # content of a file outside the config's folder

BASE = """\
period: 2026-Q4
store: sqlite:///okr.db
thresholds: {at_risk: 0.1, off_track: 0.25}
schedule: {cron: "0 7 * * 1-5", timezone: Europe/Berlin}
stale_after: 2d
notify:
  webhook: "${OKR_WEBHOOK}"
  on: [status_change, stale]
sources:
  survey: {type: spreadsheet, path: data/survey.csv}
  metrics: {type: spreadsheet, path: data/checkout-metrics.xlsx, deadline: 60}
  jira: {type: jira, url: "https://acme.atlassian.net", email: "${JIRA_EMAIL}", token: "${JIRA_TOKEN}"}
  gh: {type: github, token: {secret: gh-token}}
  gsheet: {type: google_sheets, spreadsheet: "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz012345/edit#gid=0", tabs: {Data: 0}}
objectives:
  - id: checkout
    title: Make checkout fast
    owner: payments
    key_results:
      - id: nps
        title: Raise NPS
        source: survey
        metric: {cell: C7}
        baseline: 30
        target: 45
      - id: p95
        title: Cut p95 latency
        source: metrics
        metric: {sheet: Latency, column: p95 ms, aggregate: last, where: {service: checkout}}
        baseline: 900
        target: 500
        unit: ms
      - id: bugs
        title: Fewer P1 bugs
        source: jira
        metric: {jql: "project = PAY AND priority = P1", aggregate: count}
        baseline: 20
        target: 3
      - id: prs
        title: Merge perf PRs
        source: gh
        metric: {search: "repo:acme/checkout is:pr is:merged merged:>={period.start}"}
        target: 40
      - id: sheet-cell
        title: Read a shared sheet
        source: gsheet
        metric: {sheet: Data, cell: B2}
        target: 10
        period: {start: 2026-10-01, end: 2026-12-31}
        schedule: {cron: "@daily"}
        stale_after: 36h
"""

AUTO = -1          # the issue is on the first line the case changes


@dataclass(frozen=True)
class Case:
    id: str
    edit: Callable[[str], str]
    says: str                                    # words every such config's message holds
    line: int | None = AUTO                      # the line of the (first) issue; None: no line can exist
    setup: Callable[[Path], None] | None = None  # prepares files next to the config
    second: str | None = None                    # a second config file loaded with it


def sub(old: str, new: str) -> Callable[[str], str]:
    """Replace `old`, which must occur exactly once in the base config, by `new`."""
    def edit(text: str) -> str:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the base config"
        return text.replace(old, new)
    return edit


def whole(text: str) -> Callable[[str], str]:
    return lambda _: text


def drop(line: str) -> Callable[[str], str]:
    return sub(line + "\n", "")


NPS = "      - id: nps\n"

JIRA = '{type: jira, url: "https://acme.atlassian.net", email: "${JIRA_EMAIL}", token: "${JIRA_TOKEN}"}'
GH = "{type: github, token: {secret: gh-token}}"
GSHEET_URL = "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjKlMnOpQrStUvWxYz012345/edit#gid=0"
GSHEET = f'{{type: google_sheets, spreadsheet: "{GSHEET_URL}", tabs: {{Data: 0}}}}'
SURVEY = "{type: spreadsheet, path: data/survey.csv}"
JQL = '{jql: "project = PAY AND priority = P1", aggregate: count}'
SEARCH = '{search: "repo:acme/checkout is:pr is:merged merged:>={period.start}"}'
P95 = "{sheet: Latency, column: p95 ms, aggregate: last, where: {service: checkout}}"


def source(name: str, old: str, new: str) -> Callable[[str], str]:
    return sub(f"  {name}: {old}", f"  {name}: {new}")


def mkfifo(tmp: Path) -> None:
    os.mkfifo(tmp / "data" / "pipe.csv")


def link_outside(tmp: Path) -> None:
    outside = tmp.parent / f"{tmp.name}-outside"
    outside.mkdir()
    (outside / "payroll.csv").write_text(f"name,salary\n{OUTSIDE_TEXT},{OUTSIDE_TEXT}\n", encoding="utf-8")
    (tmp / "data" / "payroll.csv").symlink_to(outside / "payroll.csv")


def link_zero(tmp: Path) -> None:
    (tmp / "data" / "zero.csv").symlink_to("/dev/zero")


def folder_csv(tmp: Path) -> None:
    (tmp / "data" / "folder.csv").mkdir()


CASES = [
    # ---- structure: wrong types at every level, missing keys, empty lists and maps
    Case("top-list", whole("- period: 2026-Q4\n"), "must be a mapping", line=1),
    Case("top-scalar", whole("okrs\n"), "must be a mapping", line=1),
    Case("empty-file", whole(""), "must be a mapping", line=None),
    Case("comments-only", whole("# nothing yet\n"), "must be a mapping", line=None),
    Case("objectives-misspelt", sub("objectives:\n", "objectivs:\n"), "did you mean `objectives`"),
    Case("objectives-map", sub("objectives:\n  - id: checkout", "objectives:\n  checkout:\n    id: checkout"),
         "must be a list", line=15),
    Case("objectives-empty", sub("objectives:\n", "objectives: []\nx_objectives:\n"), "at least one"),
    Case("objectives-scalar", sub("objectives:\n", "objectives: none\nx_objectives:\n"), "must be a list"),
    Case("sources-list", sub("sources:\n", "sources: [survey]\nx_sources:\n"), "must be a mapping"),
    Case("sources-scalar", sub("sources:\n", "sources: survey\nx_sources:\n"), "must be a mapping"),
    Case("source-scalar", source("survey", SURVEY, "data/survey.csv"), "must be a mapping"),
    Case("source-list", source("survey", SURVEY, "[spreadsheet, data/survey.csv]"), "must be a mapping"),
    Case("source-empty-map", source("survey", SURVEY, "{}"), "add `type:`"),
    Case("source-null", source("survey", SURVEY, ""), "must be a mapping"),
    Case("key-results-map", sub("    key_results:\n", "    key_results: {nps: 1}\n    x_key_results:\n"), "must be a list"),
    Case("key-results-empty", sub("    key_results:\n", "    key_results: []\n    x_key_results:\n"), "at least one"),
    Case("key-results-missing", sub("    key_results:\n", "    x_key_results:\n"), "add `key_results:`", line=16),
    Case("key-result-scalar", sub(NPS, "      - nps\n" + NPS), "must be a mapping"),
    Case("key-result-list", sub(NPS, "      - [nps, 45]\n" + NPS), "must be a mapping"),
    Case("objective-scalar", sub("objectives:\n", "objectives:\n  - checkout\n"), "must be a mapping"),
    Case("objective-null", sub("objectives:\n", "objectives:\n  -\n"), "must be a mapping"),
    Case("metric-scalar", sub("metric: {cell: C7}", "metric: C7"), "must be a mapping"),
    Case("metric-list", sub("metric: {cell: C7}", "metric: [C7]"), "must be a mapping"),
    Case("metric-empty", sub("metric: {cell: C7}", "metric: {}"), "cell: B7"),
    Case("title-list", sub("title: Raise NPS", "title: [Raise, NPS]"), "must be text"),
    Case("title-map", sub("title: Raise NPS", "title: {text: Raise NPS}"), "must be text"),
    Case("title-empty", sub("title: Raise NPS", "title: ''"), "empty"),
    Case("title-boolean", sub("title: Raise NPS", "title: yes"), "put the text in quotes"),
    Case("title-number", sub("title: Raise NPS", "title: 42"), "quote it"),
    Case("owner-boolean", sub("owner: payments", "owner: no"), "put the text in quotes"),
    Case("owner-list", sub("owner: payments", "owner: [a, b]"), "must be text"),
    Case("unit-map", sub("unit: ms", "unit: {name: ms}"), "must be text"),
    Case("on-manual-boolean", sub("        unit: ms\n", "        unit: ms\n        on_manual: yes\n"), "keep"),
    Case("unknown-top-key", sub("stale_after: 2d", "stale_afer: 2d"), "did you mean `stale_after`"),
    Case("unknown-kr-key", sub("target: 45", "targte: 45"), "did you mean `target`"),
    Case("unknown-objective-key", sub("owner: payments", "ownr: payments"), "did you mean `owner`"),
    Case("unknown-source-key", source("survey", SURVEY, "{type: spreadsheet, pth: data/survey.csv}"), "did you mean `path`"),
    Case("unknown-metric-key", sub("metric: {cell: C7}", "metric: {cel: C7}"), "did you mean `cell`"),
    Case("unknown-threshold-key", sub("{at_risk: 0.1, off_track", "{at_rsk: 0.1, off_track"), "did you mean `at_risk`"),
    Case("unknown-schedule-key", sub("timezone: Europe/Berlin", "timezon: Europe/Berlin"), "did you mean `timezone`"),
    Case("unknown-notify-key", sub("  webhook:", "  webhok:"), "did you mean `webhook`"),
    Case("unknown-jira-key", source("jira", JIRA, JIRA.replace("email:", "emial:")), "did you mean `email`"),
    Case("missing-title", drop("        title: Raise NPS"), "add `title:`", line=20),
    Case("missing-source", drop("        source: survey"), "add `source:`", line=20),
    Case("missing-metric", drop("        metric: {cell: C7}"), "add `metric:`", line=20),
    Case("missing-objective-id", sub("  - id: checkout\n    title", "  - title"), "add `id:`"),
    Case("missing-spreadsheet-path", source("survey", SURVEY, "{type: spreadsheet}"), "add `path:`"),
    # ---- ids
    Case("duplicate-kr-id", sub("id: p95", "id: nps"), "used twice"),
    Case("kr-id-equals-objective-id", sub("id: p95", "id: checkout"), "used twice"),
    Case("id-spaces", sub("id: nps", "id: net promoter"), "letters, digits"),
    Case("id-slash", sub("id: nps", "id: a/b"), "letters, digits"),
    Case("id-leading-dash", sub("id: nps", "id: -nps"), "starting with a letter or digit"),
    Case("id-very-long", sub("id: nps", "id: " + "n" * 300), "at most"),
    Case("id-unicode", sub("id: nps", "id: nps-é"), "letters, digits"),
    Case("id-homoglyph", sub("id: nps", "id: nрs"), "letters, digits"),
    Case("id-empty", sub("id: nps", "id: ''"), "letters, digits"),
    Case("id-null", sub("id: nps", "id: null"), "short unique id"),
    Case("id-number", sub("id: nps", "id: 42"), "quote it"),
    Case("source-name-bad", sub("  survey: {type", "  my survey: {type"), "letters, digits", line=9),
    Case("source-name-long", sub("  survey: {type", "  " + "s" * 300 + ": {type"), "at most", line=9),
    # ---- numbers
    Case("target-nan", sub("target: 45", "target: .nan"), "must be a number"),
    Case("target-inf", sub("target: 45", "target: .inf"), "must be a number"),
    Case("target-minus-inf", sub("target: 45", "target: -.inf"), "must be a number"),
    Case("target-1e400", sub("target: 45", "target: 1e400"), "must be a number"),
    Case("target-1.0e400", sub("target: 45", "target: 1.0e+400"), "must be a number"),
    Case("target-true", sub("target: 45", "target: true"), "not a number"),
    Case("target-units", sub("target: 45", "target: 45 points"), "no units"),
    Case("target-percent", sub("target: 45", "target: 45%"), "no units"),
    Case("target-currency", sub("target: 45", "target: €60,000"), "no units"),
    Case("target-huge-int", sub("target: 45", "target: " + "9" * 400), "must be a number"),
    Case("target-list", sub("target: 45", "target: [45]"), "must be a number"),
    Case("target-equals-baseline", sub("target: 45", "target: 30"), "set `baseline:`"),
    Case("baseline-date", sub("baseline: 30", "baseline: 2026-10-01"), "must be a number"),
    Case("deadline-negative", sub("deadline: 60", "deadline: -5"), "greater than 0"),
    Case("deadline-zero", sub("deadline: 60", "deadline: 0"), "greater than 0"),
    Case("deadline-huge", sub("deadline: 60", "deadline: 1e9"), "3600"),
    Case("deadline-nan", sub("deadline: 60", "deadline: .nan"), "must be a number"),
    Case("deadline-units", sub("deadline: 60", "deadline: 2 minutes"), "no units"),
    Case("deadline-true", sub("deadline: 60", "deadline: true"), "not a number"),
    Case("header-row-zero", source("survey", SURVEY, "{type: spreadsheet, path: data/survey.csv, header_row: 0}"),
         "greater than or equal to 1"),
    Case("header-row-fraction", source("survey", SURVEY, "{type: spreadsheet, path: data/survey.csv, header_row: 1.5}"),
         "whole number"),
    Case("header-row-true", source("survey", SURVEY, "{type: spreadsheet, path: data/survey.csv, header_row: true}"),
         "not a number"),
    Case("jira-timeout-zero", source("jira", JIRA, JIRA[:-1] + ", timeout: 0}"), "greater than 0"),
    Case("github-timeout-units", source("gh", GH, GH[:-1] + ", timeout: 30s}"), "no units"),
    Case("threshold-above-one", sub("{at_risk: 0.1,", "{at_risk: 2,"), "less than or equal to 1"),
    Case("threshold-negative", sub("{at_risk: 0.1,", "{at_risk: -0.1,"), "greater than or equal to 0"),
    Case("thresholds-reversed", sub("{at_risk: 0.1, off_track: 0.25}", "{at_risk: 0.5, off_track: 0.25}"), "must not exceed"),
    Case("thresholds-list", sub("{at_risk: 0.1, off_track: 0.25}", "[0.1, 0.25]"), "must be a mapping"),
    # ---- periods
    Case("period-words", sub("period: 2026-Q4", "period: Q4 2026"), "2026-Q4"),
    Case("period-q5", sub("period: 2026-Q4", "period: 2026-Q5"), "2026-Q4"),
    Case("period-month-13", sub("period: 2026-Q4", "period: 2026-13"), "2026-Q4"),
    Case("period-reversed", sub("period: {start: 2026-10-01, end: 2026-12-31}", "period: {start: 2026-12-31, end: 2026-10-01}"),
         "swap start and end"),
    Case("period-impossible-date", sub("period: {start: 2026-10-01,", "period: {start: '2026-02-30',"), "dates like"),
    Case("period-9999", sub("end: 2026-12-31}", "end: 9999-12-31}"), "between the years"),
    Case("period-1800", sub("period: 2026-Q4", "period: 1800"), "between the years"),
    Case("period-start-only", sub("period: {start: 2026-10-01, end: 2026-12-31}", "period: {start: 2026-10-01}"),
         "{start: 2026-10-01, end: 2026-12-31}"),
    Case("period-list", sub("period: 2026-Q4", "period: [2026-10-01, 2026-12-31]"), "2026-Q4"),
    Case("period-boolean", sub("period: 2026-Q4", "period: yes"), "2026-Q4"),
    Case("period-date", sub("period: 2026-Q4", "period: 2026-10-01"), "2026-Q4"),
    Case("period-us-date", sub("end: 2026-12-31}", "end: 12/31/2026}"), "dates like"),
    Case("period-negative-year", sub("period: 2026-Q4", "period: -2026"), "2026-Q4"),
    # ---- templates
    Case("template-unknown", sub("merged:>={period.start}", "merged:>={period.begin}"), "{period.start}"),
    Case("template-unclosed", sub("merged:>={period.start}", "merged:>={period.start"), "unclosed"),
    Case("template-dashed", sub("priority = P1", "priority = P1 AND created <= {as-of}"), "{as_of}"),
    Case("template-capitals", sub("priority = P1", "priority = P1 AND created >= {Period.Start}"), "{period.start}"),
    Case("template-in-sheet", sub("{sheet: Data, cell: B2}", "{sheet: 'Data {as_of', cell: B2}"), "unclosed"),
    # ---- sources
    Case("source-type-unknown", source("survey", SURVEY, SURVEY.replace("spreadsheet", "spredsheet")),
         "did you mean `spreadsheet`"),
    Case("source-type-missing", source("survey", SURVEY, "{path: data/survey.csv}"), "add `type:`"),
    Case("source-type-list", source("survey", SURVEY, "{type: [spreadsheet], path: data/survey.csv}"), "source type"),
    Case("source-type-map", source("survey", SURVEY, "{type: {name: jira}, path: data/survey.csv}"), "source type"),
    Case("path-missing-file", source("survey", SURVEY, "{type: spreadsheet, path: data/nope.csv}"), "file not found"),
    Case("path-folder", source("survey", SURVEY, "{type: spreadsheet, path: data/folder.csv}"), "is a folder",
         setup=folder_csv),
    Case("path-fifo", source("survey", SURVEY, "{type: spreadsheet, path: data/pipe.csv}"), "not a regular file",
         setup=mkfifo),
    Case("path-absolute-fifo", lambda t: t.replace("path: data/survey.csv", "path: ABS/data/pipe.csv"),
         "not a regular file", line=10, setup=mkfifo),
    Case("path-dev-zero", source("survey", SURVEY, "{type: spreadsheet, path: /dev/zero}"), "unsupported file type"),
    Case("path-link-to-dev-zero", source("survey", SURVEY, "{type: spreadsheet, path: /tmp/../dev/zero.csv}"),
         "file not found"),
    Case("path-symlink-to-device", source("survey", SURVEY, "{type: spreadsheet, path: data/zero.csv}"),
         "outside", setup=link_zero),
    Case("path-symlink-outside", source("survey", SURVEY, "{type: spreadsheet, path: data/payroll.csv}"),
         "outside", setup=link_outside),
    Case("path-dotdot-outside", source("survey", SURVEY, "{type: spreadsheet, path: ../../etc/passwd.csv}"), "outside"),
    Case("path-wrong-suffix", source("survey", SURVEY, "{type: spreadsheet, path: data/survey.txt}"), "unsupported file type"),
    Case("path-empty", source("survey", SURVEY, "{type: spreadsheet, path: ''}"), "path"),
    Case("path-number", source("survey", SURVEY, "{type: spreadsheet, path: 42}"), "must be written as text"),
    Case("path-list", source("survey", SURVEY, "{type: spreadsheet, path: [data/survey.csv]}"), "must be written as text"),
    Case("path-nul", source("survey", SURVEY, '{type: spreadsheet, path: "data/su\\0rvey.csv"}'), "path"),
    Case("path-too-long", source("survey", SURVEY, "{type: spreadsheet, path: data/" + "x" * 5000 + ".csv}"), "path"),
    Case("encoding-unknown", source("survey", SURVEY, "{type: spreadsheet, path: data/survey.csv, encoding: klingon}"),
         "unknown encoding"),
    Case("encoding-on-xlsx", sub("checkout-metrics.xlsx, deadline", "checkout-metrics.xlsx, encoding: cp1252, deadline"),
         "applies only to CSV"),
    Case("delimiter-long", source("survey", SURVEY, "{type: spreadsheet, path: data/survey.csv, delimiter: ';;'}"),
         "one character"),
    Case("delimiter-number", source("survey", SURVEY, "{type: spreadsheet, path: data/survey.csv, delimiter: 5}"), "quote it"),
    Case("jira-url-no-scheme", source("jira", JIRA, JIRA.replace('"https://acme.atlassian.net"', "acme.atlassian.net")),
         "not a web address"),
    Case("jira-url-ftp", source("jira", JIRA, JIRA.replace("https://", "ftp://")), "not a web address"),
    Case("jira-url-api-path", source("jira", JIRA, JIRA.replace(".net", ".net/rest/api/3")), "base address"),
    Case("jira-url-credentials", source("jira", JIRA, JIRA.replace("https://", f"https://bob:{SECRET}@")),
         "must not hold credentials"),
    Case("jira-url-credentials-bad-port", source("jira", JIRA, JIRA.replace("https://acme", f"https://bob:{SECRET}@acme")
                                                 .replace(".net", ".net:99999")), "not a web address"),
    Case("jira-url-credentials-ftp", source("jira", JIRA, JIRA.replace("https://", f"ftp://bob:{SECRET}@")),
         "not a web address"),
    Case("jira-url-bad-ipv6", source("jira", JIRA, JIRA.replace("acme.atlassian.net", "[::1")), "not a web address"),
    Case("jira-url-bad-port", source("jira", JIRA, JIRA.replace(".net", ".net:99999")), "Port out of range"),
    Case("jira-url-number", source("jira", JIRA, JIRA.replace('"https://acme.atlassian.net"', "42")), "quote it"),
    Case("jira-token-plain", source("jira", JIRA, JIRA.replace('"${JIRA_TOKEN}"', SECRET)), "plain-text secrets"),
    Case("jira-token-bad-variable", source("jira", JIRA, JIRA.replace("${JIRA_TOKEN}", "${JIRA-TOKEN}")), "variable"),
    Case("jira-token-both", source("jira", JIRA, JIRA.replace('"${JIRA_TOKEN}"', "{env: A, secret: b}")), "exactly one"),
    Case("jira-token-bad-ref-key", source("jira", JIRA, JIRA.replace('"${JIRA_TOKEN}"', "{secrt: b}")), "{secret: NAME}"),
    Case("jira-token-empty-secret", source("jira", JIRA, JIRA.replace('"${JIRA_TOKEN}"', "{secret: ''}")), "{secret: NAME}"),
    Case("jira-token-number", source("jira", JIRA, JIRA.replace('"${JIRA_TOKEN}"', "12345")), "{secret: NAME}"),
    Case("jira-token-missing", source("jira", JIRA, JIRA.replace(', token: "${JIRA_TOKEN}"', "")), "add `token:`"),
    Case("jira-email-not-email", source("jira", JIRA, JIRA.replace('"${JIRA_EMAIL}"', "bob")), "email"),
    Case("jira-cloud-without-email", source("jira", JIRA, JIRA.replace('email: "${JIRA_EMAIL}", ', "")), "add `email:`"),
    Case("github-base-url-site", source("gh", GH, GH[:-1] + ", base_url: https://github.com}"), "remove `base_url:`"),
    Case("github-base-url-ghes", source("gh", GH, GH[:-1] + ", base_url: https://github.acme.com}"), "/api/v3"),
    Case("github-base-url-text", source("gh", GH, GH[:-1] + ", base_url: not a url}"), "base_url must be a URL"),
    Case("github-base-url-credentials", source("gh", GH, GH[:-1] + f", base_url: 'https://x:{SECRET}@ghe.acme.com/api/v3'}}"),
         "must not hold credentials"),
    Case("github-token-plain", source("gh", GH, f"{{type: github, token: ghp_{SECRET}}}"), "plain-text secrets"),
    Case("github-token-secret-list", source("gh", GH, "{type: github, token: {secret: [a]}}"), "`secret` must be text"),
    Case("gsheet-not-a-sheet", source("gsheet", GSHEET, GSHEET.replace(GSHEET_URL, "https://example.com/sheet")),
         "not a Google Sheets URL"),
    Case("gsheet-published", source("gsheet", GSHEET, GSHEET.replace("/d/", "/d/e/")), "Publish to the web"),
    Case("gsheet-inline-key", source("gsheet", GSHEET, GSHEET.replace("tabs: {Data: 0}",
                                     f"service_account: {{type: service_account, private_key: {SECRET}}}")),
         "do not paste the key"),
    Case("gsheet-key-file-missing", source("gsheet", GSHEET, GSHEET.replace("tabs: {Data: 0}", "service_account: key.json")),
         "not found"),
    Case("gsheet-tabs-with-key", source("gsheet", GSHEET, GSHEET.replace("tabs:", 'service_account: "${KEY}", tabs:')),
         "remove `tabs:`"),
    Case("gsheet-tab-gid-text", source("gsheet", GSHEET, GSHEET.replace("{Data: 0}", "{Data: zero}")), "must be a number"),
    Case("gsheet-decimal", source("gsheet", GSHEET, GSHEET.replace("tabs:", "decimal: dot, tabs:")), "'point' or 'comma'"),
    Case("gsheet-api-base", source("gsheet", GSHEET, GSHEET.replace("tabs:", "api_base: ftp://x, tabs:")), "http(s)"),
    # ---- metrics per connector
    Case("cell-reversed", sub("metric: {cell: C7}", "metric: {cell: 7C}"), "A1 notation"),
    Case("cell-with-sheet", sub("metric: {cell: C7}", "metric: {cell: 'Sheet1!C7'}"), "sheet apart"),
    Case("cell-four-letters", sub("metric: {cell: C7}", "metric: {cell: ZZZZ1}"), "A1 notation"),
    Case("cell-row-zero", sub("metric: {cell: C7}", "metric: {cell: C0}"), "A1 notation"),
    Case("cell-number", sub("metric: {cell: C7}", "metric: {cell: 7}"), "A1 notation"),
    Case("cell-and-column", sub("metric: {cell: C7}", "metric: {cell: C7, column: score, aggregate: sum}"), "both given"),
    Case("column-without-aggregate", sub("metric: {cell: C7}", "metric: {column: score}"), "needs `aggregate"),
    Case("aggregate-unknown", sub("aggregate: last, where", "aggregate: total, where"), "'sum'"),
    Case("aggregate-median", sub("aggregate: last, where", "aggregate: median, where"), "'sum'"),
    Case("cell-with-aggregate", sub("metric: {cell: C7}", "metric: {cell: C7, aggregate: sum}"), "only go with `column:`"),
    Case("where-list", sub("where: {service: checkout}", "where: [service, checkout]"), "must be a mapping"),
    Case("where-value-list", sub("where: {service: checkout}", "where: {service: [checkout, search]}"), "must be text, true or false, a number or a date"),
    Case("column-letter-digit", sub("column: p95 ms,", "column_letter: '3',"), "column letter"),
    Case("column-empty", sub("column: p95 ms,", "column: '',"), "must name a header"),
    Case("sheet-empty", sub("{sheet: Latency,", "{sheet: '',"), "sheet"),
    Case("sheet-unknown-xlsx", sub("{sheet: Latency,", "{sheet: Latenc,"), "no sheet 'Latenc'"),
    Case("sheet-on-csv", sub("metric: {cell: C7}", "metric: {sheet: Survey, cell: C7}"), "CSV files have no sheets"),
    Case("jql-empty", sub("jql: \"project = PAY AND priority = P1\"", "jql: '  '"), "is empty"),
    Case("jql-only-order", sub("project = PAY AND priority = P1", "ORDER BY rank"), "no condition"),
    Case("jira-sum-no-field", sub("aggregate: count}", "aggregate: sum}"), "needs `field:`"),
    Case("jira-field-with-count", sub("aggregate: count}", "aggregate: count, field: Story Points}"), "`field:` goes with"),
    Case("jira-ratio-half", sub(JQL, '{jql_done: "project = PAY"}'), "needs `jql_total:`"),
    Case("jira-jql-and-ratio", sub(JQL, '{jql: "project = PAY", jql_done: "a = b", jql_total: "a = c"}'), "do not go with"),
    Case("jira-aggregate-unknown", sub("aggregate: count}", "aggregate: percent}"), "'percent_done'"),
    Case("jira-weight-with-count", sub("aggregate: count}", "aggregate: count, weight: Story Points}"), "`weight:` goes with"),
    Case("github-search-no-kind", sub("repo:acme/checkout is:pr is:merged", "repo:acme/checkout label:perf"), "is:pr"),
    Case("github-search-and-repo", sub(SEARCH, '{search: "is:pr repo:a/b", repo: acme/checkout}'), "mixes"),
    Case("github-median-no-field", sub(SEARCH, '{search: "is:pr is:merged repo:a/b", aggregate: median}'), "needs `field"),
    Case("github-repo-bad", sub(SEARCH, "{repo: acme, aggregate: releases}"), "owner/name"),
    Case("github-milestone-float", sub(SEARCH, "{repo: acme/checkout, milestone: 1.5}"), "quote the title"),
    Case("github-since-words", sub(SEARCH, "{repo: acme/checkout, aggregate: releases, since: yesterday}"), "YYYY-MM-DD"),
    Case("github-field-unknown", sub(SEARCH, '{search: "is:pr is:merged repo:a/b", aggregate: avg, field: hours}'),
         "'hours_to_merge'"),
    Case("github-releases-with-search", sub(SEARCH, '{search: "is:pr repo:a/b", aggregate: releases}'), "does not go with"),
    Case("gsheet-sheet-not-in-tabs", sub("{sheet: Data, cell: B2}", "{sheet: Summary, cell: B2}"), "tabs", line=14),
    Case("gsheet-cell-bad", sub("{sheet: Data, cell: B2}", "{sheet: Data, cell: B}"), "A1 notation"),
    Case("gsheet-cell-and-letter", sub("{sheet: Data, cell: B2}", "{sheet: Data, cell: B2, column_letter: B}"), "both given"),
    # ---- schedules, notify, stale_after
    Case("cron-words", sub('cron: "0 7 * * 1-5"', 'cron: "every day"'), "five fields"),
    Case("cron-hour-25", sub('cron: "0 7 * * 1-5"', 'cron: "0 25 * * *"'), "five fields"),
    Case("cron-number", sub('cron: "0 7 * * 1-5"', "cron: 5"), "quote it"),
    Case("timezone-unknown", sub("timezone: Europe/Berlin", "timezone: Mars/Olympus"), "IANA"),
    Case("timezone-typo", sub("timezone: Europe/Berlin", "timezone: Europe/Berln"), "did you mean Europe/Berlin"),
    Case("timezone-path", sub("timezone: Europe/Berlin", "timezone: ../../etc/passwd"), "unknown timezone"),
    Case("schedule-scalar", sub('schedule: {cron: "0 7 * * 1-5", timezone: Europe/Berlin}', 'schedule: "0 7 * * 1-5"'),
         "must be a mapping"),
    Case("kr-cron-bad", sub('{cron: "@daily"}', '{cron: "@sometimes"}'), "five fields"),
    Case("webhook-plain", sub('webhook: "${OKR_WEBHOOK}"', f"webhook: https://hooks.slack.com/services/{SECRET}"),
         "plain-text secrets"),
    Case("notify-on-unknown", sub("on: [status_change, stale]", "on: [everything]"), "'status_change'"),
    Case("notify-on-empty", sub("on: [status_change, stale]", "on: []"), "at least one"),
    Case("notify-on-scalar", sub("on: [status_change, stale]", "on: stale"), "must be a list"),
    Case("notify-boolean", sub('notify:\n  webhook: "${OKR_WEBHOOK}"\n  on: [status_change, stale]', "notify: yes"),
         "must be a mapping"),
    Case("stale-words", sub("stale_after: 2d", "stale_after: forever"), "90m, 36h"),
    Case("stale-zero", sub("stale_after: 2d", "stale_after: 0d"), "longer than zero"),
    Case("stale-negative", sub("stale_after: 36h", "stale_after: -1d"), "90m, 36h"),
    Case("stale-number", sub("stale_after: 2d", "stale_after: 2"), "90m, 36h"),
    Case("stale-overflow", sub("stale_after: 2d", "stale_after: 99999999999999w"), "too long"),
    # ---- store URLs
    Case("store-scheme", sub("store: sqlite:///okr.db", "store: mysql://db/okr"), "sqlite:///"),
    Case("store-not-url", sub("store: sqlite:///okr.db", "store: okr.db"), "sqlite:///"),
    Case("store-unset-variable", sub("store: sqlite:///okr.db", "store: ${OKR_UNSET_STORE_VAR}"), "is not set"),
    Case("store-unset-inside", sub("store: sqlite:///okr.db", "store: postgresql://bob@${OKR_UNSET_HOST_VAR}/okr"), "is not set"),
    Case("store-number", sub("store: sqlite:///okr.db", "store: 5432"), "quote it"),
    # ---- several files
    Case("two-files-same-id", lambda t: t, "used twice", line=6,
         second="period: 2026-Q4\nobjectives:\n  - id: other\n    title: Other\n    key_results:\n"
                "      - {id: nps, title: Again, source: s, metric: {cell: B2}, target: 5}\n"
                "sources:\n  s: {type: spreadsheet, path: data/survey.csv}\n"),
    Case("two-files-two-stores", lambda t: t, "different stores", line=None,
         second="period: 2026-Q4\nstore: sqlite:///other.db\nobjectives:\n  - id: other\n    title: Other\n"
                "    key_results:\n      - {id: more, title: More, source: s, metric: {cell: B2}, target: 5}\n"
                "sources:\n  s: {type: spreadsheet, path: data/survey.csv}\n"),
]


# Issues that cannot have a line: the file holds no YAML node, or the issue is between files.
NO_LINE = {"empty-file", "comments-only", "two-files-two-stores"}


def write_case(case: Case, tmp: Path) -> list[Path]:
    """The case's config file(s) next to a copy of the example's data files."""
    shutil.copytree(DATA, tmp / "data")
    if case.setup is not None:
        case.setup(tmp)
    config = tmp / "okrs.yaml"
    config.write_text(case.edit(BASE).replace("ABS/", f"{tmp}/"), encoding="utf-8")
    if case.second is None:
        return [config]
    other = tmp / "other.yaml"
    other.write_text(case.second, encoding="utf-8")
    return [config, other]


def expected_line(case: Case) -> int | None:
    if case.line != AUTO:
        return case.line
    changed = case.edit(BASE).splitlines()
    return next(n for n, (was, now) in enumerate(zip(BASE.splitlines(), changed), 1) if was != now)


def assert_one_line_each(case_id: str, issues: list, printed: list[str]) -> None:
    for issue, text in zip(issues, printed):
        assert "\n" not in text and "Traceback" not in text, text
        assert SECRET not in text and OUTSIDE_TEXT not in text, text
        if case_id in NO_LINE:
            assert issue.line is None and text.startswith(f"{issue.file}: "), text
        else:
            assert issue.line is not None and text.startswith(f"{issue.file}:{issue.line}: "), text


def test_the_base_config_is_valid(tmp_path):
    plan = load_plan(write_case(Case("base", lambda t: t, ""), tmp_path))
    assert [kr.id for kr in plan.key_results] == ["nps", "p95", "bugs", "prs", "sheet-cell"]


def test_the_table_is_big_and_distinct():
    assert len(CASES) >= 120
    assert len({case.id for case in CASES}) == len(CASES)
    assert len({case.edit(BASE) + (case.second or "") for case in CASES if case.setup is None}) == \
        sum(case.setup is None for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_malformed_config_is_refused_with_file_and_line(case, tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_plan(write_case(case, tmp_path))
    issues = caught.value.issues
    assert issues
    assert_one_line_each(case.id, issues, [str(issue) for issue in issues])
    saying = [issue for issue in issues if case.says in issue.message]
    assert saying, f"no issue says {case.says!r}: {[str(i) for i in issues]}"
    assert saying[0].line == expected_line(case), str(saying[0])


CLI_SAMPLE = ["objective-scalar", "title-boolean", "period-list", "source-type-list", "path-fifo",
              "path-symlink-outside", "path-too-long", "jira-token-plain", "stale-overflow"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in CLI_SAMPLE], ids=lambda case: case.id)
def test_validate_command_exits_2_without_traceback(case, tmp_path):
    paths = write_case(case, tmp_path)
    done = subprocess.run([sys.executable, "-m", "okrsync.cli", "validate", *map(str, paths)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    shown = done.stdout + done.stderr
    assert "Traceback" not in shown and SECRET not in shown and OUTSIDE_TEXT not in shown
    assert f"{paths[0]}:{expected_line(case)}: " in done.stderr


def test_an_absolute_path_outside_the_folder_is_the_admins_choice(tmp_path):
    case = Case("outside-absolute", sub("path: data/survey.csv", "path: ABS/data/payroll.csv"), "", setup=link_outside)
    plan = load_plan(write_case(case, tmp_path))
    assert plan.sources["survey"].config.path == tmp_path / "data" / "payroll.csv"


def fifo_config(tmp: Path) -> Path:
    os.mkfifo(tmp / "okrs.yaml")
    return tmp / "okrs.yaml"


def latin1_config(tmp: Path) -> Path:
    (tmp / "okrs.yaml").write_bytes("period: 2026-Q4\ntitle: caf\xe9\n".encode("latin-1"))
    return tmp / "okrs.yaml"


@pytest.mark.parametrize("make, says", [
    (lambda tmp: tmp / "missing.yaml", "not found"),
    (lambda tmp: tmp, "not a regular file"),
    (fifo_config, "not a regular file"),          # reading a pipe would wait for a writer forever
    (latin1_config, "UTF-8"),
], ids=["missing", "folder", "fifo", "latin-1"])
def test_a_config_file_that_cannot_be_read_has_no_line(make, says, tmp_path):
    path = make(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_plan([path])
    assert [str(issue) for issue in caught.value.issues] == [f"{path}: {caught.value.issues[0].message}"]
    assert says in caught.value.issues[0].message


def test_a_missing_column_lists_headers_without_echoing_a_long_one():
    from connectors._tabular import SheetLabel, SheetPass, TabularMetric

    scan = SheetPass(SheetLabel("data/x.csv"))
    scan.add("kr", TabularMetric(column="amount", aggregate="sum"))
    scan.feed(1, ["team", OUTSIDE_TEXT * 20])
    message = str(scan.finish()["kr"])
    assert '"team"' in message and "…" in message and OUTSIDE_TEXT * 3 not in message
