"""Estimate frontier training time and cost from measured (or published) efficiency."""
