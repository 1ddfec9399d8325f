"""Probe results -> ranked architecture edits (`harness-suggest`); see rules.py for the rules and their scores."""

from harness.facts.overrides import Edit
from harness.suggest.load import RunSummary, summarise
from harness.suggest.rules import RULES, Suggestion, suggest

__all__ = ["RULES", "Edit", "RunSummary", "Suggestion", "suggest", "summarise"]
