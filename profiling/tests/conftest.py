"""Tests of the profiling tools themselves (run by CI: ``pytest profiling/tests``; not
part of the default ``pytest``, whose ``testpaths`` is ``tests``)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root."""
