"""Workflows used by tests that run in subprocesses."""
