"""A local Jira Cloud / Jira Data Center / GitHub for the fault suite and the benchmark.

`generate()` builds a deterministic dataset; `LoadServer` serves it on 127.0.0.1 with request
counting, latency, each service's rate limits and faults on demand; `oracle` computes what a
key result must read straight from the data (never through the server's query evaluators).
"""
from __future__ import annotations

from .dataset import Dataset, GitHubItem, JiraIssue, generate
from .server import Fault, LoadServer, Request

__all__ = ["Dataset", "Fault", "GitHubItem", "JiraIssue", "LoadServer", "Request", "generate"]
