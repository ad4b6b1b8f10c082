"""A config with one spreadsheet key result (nps: survey.csv B2, 30 → 45), shared by the store and CLI tests."""

CONFIG = """period: 2026-Q4
sources:
  survey: {type: spreadsheet, path: survey.csv}
objectives:
  - id: checkout
    title: Make checkout fast
    key_results:
      - id: nps
        title: Raise NPS from 30 to 45
        source: survey
        metric: {cell: B2}
        baseline: 30
        target: 45
"""
