"""Tests of tasks/: data loaders and synthetic problems."""
