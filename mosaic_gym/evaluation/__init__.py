"""Evaluation and reporting: run an agent over the suites (:mod:`.run`), the metric table and its
intervals (:mod:`.metrics`), trajectory records, reports, plots, comparisons and exports."""
