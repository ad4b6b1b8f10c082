"""Config validation: every mistake reported at once, as file:line: who: what and how to fix."""
from __future__ import annotations

import textwrap

import pytest

from conftest import EXAMPLE
from okrsync.config import load_plan
from okrsync.errors import ConfigError

HEAD = """\
period: 2026-Q4
sources:
  survey: {type: spreadsheet, path: survey.csv}
objectives:
  - id: checkout
    title: Make checkout fast
    key_results:
"""
GOOD_KR = """\
      - id: nps
        title: Raise NPS
        source: survey
        metric: {cell: B2}
        baseline: 30
        target: 45
"""


@pytest.fixture
def config(tmp_path):
    (tmp_path / "survey.csv").write_text("q,score\nNPS,38\n", encoding="utf-8")

    def write(text: str):
        path = tmp_path / "okrs.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path
    return write


def issues_of(path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_plan([path])
    return [str(i) for i in caught.value.issues]


def test_valid_config_loads(config):
    plan = load_plan([config(HEAD + GOOD_KR)])
    assert [kr.id for kr in plan.key_results] == ["nps"]
    assert plan.key_results[0].period.start.isoformat() == "2026-10-01"


# (what is wrong, YAML, line, who, words of the fix)
CASES = [
    ("missing target", HEAD + GOOD_KR.replace("        target: 45\n", ""), 8, "nps", "add `target:`"),
    ("target not a number", HEAD + GOOD_KR.replace("target: 45", "target: lots"), 13, "nps", "must be a number"),
    ("target equals baseline", HEAD + GOOD_KR.replace("target: 45", "target: 30"), 13, "nps", "set `baseline:`"),
    ("unknown source", HEAD + GOOD_KR.replace("source: survey", "source: survy"), 10, "nps", "did you mean `survey`"),
    ("misspelt key", HEAD + GOOD_KR.replace("baseline: 30", "basline: 30"), 12, "nps", "did you mean `baseline`"),
    ("bad period", HEAD.replace("2026-Q4", "Q4-2026") + GOOD_KR, 1, None, "2026-Q4"),
    ("unknown source type", HEAD.replace("type: spreadsheet", "type: spreadsheat") + GOOD_KR, 3, "sources.survey",
     "did you mean `spreadsheet`"),
    ("plain source without type", HEAD.replace("{type: spreadsheet, path: survey.csv}", "{path: survey.csv}") + GOOD_KR,
     3, "sources.survey", "add `type:`"),
    ("missing data file", HEAD.replace("survey.csv}", "nope.csv}") + GOOD_KR, 3, "sources.survey", "check `path:`"),
    ("duplicate kr id", HEAD + GOOD_KR + GOOD_KR, 14, "nps", "ids must be unique"),
    ("bad id characters", HEAD + GOOD_KR.replace("id: nps", "id: n p s!"), 8, "n p s!", "letters, digits"),
    ("metric with both cell and column", HEAD + GOOD_KR.replace("{cell: B2}", "{cell: B2, column: score, aggregate: sum}"),
     11, "nps", "either"),
    ("bad aggregate", HEAD + GOOD_KR.replace("{cell: B2}", "{column: score, aggregate: total}"), 11, "nps", "sum"),
    ("bad cell reference", HEAD + GOOD_KR.replace("{cell: B2}", "{cell: 2B}"), 11, "nps", "B7"),
    ("unknown placeholder", HEAD + GOOD_KR.replace("{cell: B2}", "{cell: B2, sheet: '{period.begin}'}"), 11, "nps",
     "{period.start}"),
    ("on_manual value", HEAD + GOOD_KR + "        on_manual: replace\n", 14, "nps", "'keep' or 'overwrite'"),
    ("thresholds reversed", HEAD + GOOD_KR + "        thresholds: {at_risk: 0.5, off_track: 0.2}\n", 14, "nps",
     "must not exceed"),
    ("no key results", HEAD + "      []\n", 7, "checkout", "at least one"),
    ("objective without title", HEAD.replace("    title: Make checkout fast\n", "") + GOOD_KR, 5, "checkout",
     "add `title:`"),
    ("yaml syntax", HEAD + GOOD_KR.replace("metric: {cell: B2}", "metric: {cell: B2"), 12, None, "YAML syntax error"),
    ("unknown top-level key", "periode: 2026-Q4\n" + HEAD.replace("period: 2026-Q4\n", "") + GOOD_KR, 1, None,
     "did you mean `period`"),
    ("no period anywhere", HEAD.replace("period: 2026-Q4\n", "") + GOOD_KR, 7, "nps", "add `period: 2026-Q4`"),
    ("baseline quoted text", HEAD + GOOD_KR.replace("baseline: 30", "baseline: thirty"), 12, "nps", "no quotes"),
]


@pytest.mark.parametrize("what,text,line,who,fix", CASES, ids=[c[0] for c in CASES])
def test_each_mistake_names_place_and_fix(config, what, text, line, who, fix):
    path = config(text)
    issues = issues_of(path)
    prefix = f"{path}:{line}:" + (f" {who}:" if who else "")
    matching = [i for i in issues if i.startswith(prefix)]
    assert matching, f"{what}: no issue starts with {prefix!r}; got {issues}"
    assert any(fix in i for i in matching), f"{what}: no issue at {prefix} says {fix!r}; got {matching}"


def test_every_mistake_reported_at_once(config):
    text = HEAD.replace("2026-Q4", "someday") + GOOD_KR.replace("target: 45", "target: x").replace(
        "source: survey", "source: nowhere") + GOOD_KR.replace("id: nps", "id: nps2").replace("{cell: B2}", "{cel: B2}")
    issues = issues_of(config(text))
    assert len(issues) >= 4, issues
    joined = "\n".join(issues)
    assert "period" in joined and "`target` must be a number" in joined
    assert "unknown source `nowhere`" in joined and "unknown key `cel`" in joined


def test_plain_text_secret_is_rejected(config, monkeypatch):
    from pydantic import BaseModel

    from okrsync.refs import SecretRef

    class Source(BaseModel):
        token: SecretRef

    with pytest.raises(ValueError, match=r"plain-text secrets are not allowed.*\$\{VARIABLE\}"):
        Source.model_validate({"token": "ghp_abc123"})
    monkeypatch.setenv("MY_TOKEN", "s3cret-value")
    ref = Source.model_validate({"token": "${MY_TOKEN}"}).token
    assert ref.reveal().get_secret_value() == "s3cret-value"
    assert "MY_TOKEN" in ref.describe() and "s3cret" not in ref.describe()
    assert Source.model_validate({"token": {"secret": "jira-token"}}).token.secret == "jira-token"


def test_missing_env_secret_names_variable_not_value(monkeypatch):
    from okrsync.errors import SourceError
    from okrsync.refs import SecretRef

    monkeypatch.delenv("NOT_SET_TOKEN", raising=False)
    with pytest.raises(SourceError, match="NOT_SET_TOKEN is not set"):
        SecretRef.model_validate("${NOT_SET_TOKEN}").reveal()


def test_ids_unique_across_files(tmp_path, config):
    first = config(HEAD + GOOD_KR)
    second = tmp_path / "team2.yaml"
    second.write_text((HEAD + GOOD_KR).replace("id: checkout", "id: checkout2"), encoding="utf-8")
    issues = issues_of_many([first, second])
    assert any(i.startswith(f"{second}:8: nps:") and "also at" in i and str(first) in i for i in issues), issues


def issues_of_many(paths) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_plan(paths)
    return [str(i) for i in caught.value.issues]


def test_relative_paths_resolve_against_config_file(tmp_path, config, monkeypatch):
    plan = load_plan([config(HEAD + GOOD_KR)])
    monkeypatch.chdir("/")
    source = next(iter(plan.sources.values()))
    assert source.config.path == tmp_path / "survey.csv"


def test_templates_rendered_per_run(config):
    from datetime import date

    from okrsync.config import render_metric, render_templates
    from okrsync.measure import Period

    period = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
    got = render_templates({"q": "merged:>={period.start} created:<{period.end} as of {as_of}"}, period, date(2026, 11, 5))
    assert got == {"q": "merged:>=2026-10-01 created:<2026-12-31 as of 2026-11-05"}
    plan = load_plan([config(HEAD + GOOD_KR)])
    kr = plan.key_results[0]
    assert render_metric(kr.metric, kr.period, date(2026, 11, 5)).cell == "B2"


def test_store_precedence(config, monkeypatch, tmp_path):
    path = config("store: sqlite:///team.db\n" + HEAD + GOOD_KR)
    monkeypatch.delenv("OKR_SYNC_STORE", raising=False)
    assert load_plan([path]).store_url == f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv("OKR_SYNC_STORE", "sqlite:///env.db")
    assert load_plan([path]).store_url == "sqlite:///env.db"
    assert load_plan([path], store="sqlite:///cli.db").store_url == "sqlite:///cli.db"


def test_period_forms():
    from okrsync.config import parse_period

    assert (str(parse_period("2026-Q1").start), str(parse_period("2026-Q1").end)) == ("2026-01-01", "2026-03-31")
    assert str(parse_period("2028-02").end) == "2028-02-29"
    assert str(parse_period("2026-H2").start) == "2026-07-01"
    assert str(parse_period({"start": "2026-10-15", "end": "2027-01-15"}).end) == "2027-01-15"
    with pytest.raises(ValueError, match="before it starts"):
        parse_period({"start": "2026-12-01", "end": "2026-10-01"})


def test_validate_reports_every_kind_of_mistake_in_one_pass(tmp_path, monkeypatch):
    """A duplicate id, a malformed cell, an unknown sheet, `sheet:` on a CSV and a Jira Cloud site
    without `email:` all show in the first round, each at its own line."""
    import shutil

    shutil.copytree(EXAMPLE.parent / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)                     # files are named relative to the working directory
    path = tmp_path / "okrs.yaml"
    path.write_text(
        "period: 2026-Q4\n"
        "sources:\n"
        "  survey: {type: spreadsheet, path: data/survey.csv}\n"
        "  metrics: {type: spreadsheet, path: data/checkout-metrics.xlsx}\n"
        "  jira: {type: jira, url: https://acme.atlassian.net, token: '${JIRA_API_TOKEN}'}\n"
        "objectives:\n"
        "  - id: o\n"
        "    title: O\n"
        "    key_results:\n"
        "      - {id: a, title: A, source: survey, metric: {cell: C7}, target: 45}\n"
        "      - {id: a, title: A2, source: survey, metric: {cell: ZZ}, target: 45}\n"
        "      - {id: b, title: B, source: survey, metric: {cell: C7, sheet: Foo}, target: 45}\n"
        "      - {id: c, title: C, source: metrics, metric: {sheet: Nope, cell: B2}, target: 45}\n"
        "      - {id: d, title: D, source: jira, metric: {jql: project = PAY}, target: 45}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_plan([path])
    got = [str(issue) for issue in caught.value.issues]
    assert got[:2] == [f"{path}:11: a: id `a` is used twice (also at {path}:10): ids must be unique across all config files",
                       f"{path}:11: a: cell must be in A1 notation, like B7 (got 'ZZ')"]
    assert f"{path}:12: b: data/survey.csv: CSV files have no sheets; remove `sheet:`" in got
    assert (f"{path}:13: c: data/checkout-metrics.xlsx: no sheet 'Nope': check `sheet:`; "
            "the sheets are 'Latency', 'Reliability'") in got
    assert any(g.startswith(f"{path}:5: sources.jira: acme.atlassian.net is Jira Cloud") and "`email:`" in g for g in got)
    assert len(got) == 5
