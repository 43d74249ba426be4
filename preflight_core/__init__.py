"""preflight's core: the registry of assets and facts, where they live, options, findings, hashing.

Imports neither ``checks`` (the pytest product) nor ``fetchers``; both build on it.
"""
