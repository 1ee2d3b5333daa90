"""Suites that cross modules: the CLI end to end, crashes and faults, corpora, fuzzing,
conformance to the real service, compatibility, the project's layering and packaging."""
