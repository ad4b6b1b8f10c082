"""Prefect flows and deployments: orchestration only, no API details."""
