"""Reliability tests: bad input, numerical faults, interrupted runs and fuzzing (issue 9)."""
