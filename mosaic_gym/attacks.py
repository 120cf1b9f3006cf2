"""Adversarial text in tool output: where it shows up in what the agent sees."""

from __future__ import annotations

import json
from collections.abc import Iterable


def find_spans(observation: str, adversarial: Iterable[str]) -> list[tuple[int, int]]:
    """Character spans of ``observation`` that are injected text.

    Tool results are often JSON, where the injected text appears escaped (newlines as
    ``\\n``), so both the raw and the escaped forms are searched.
    """
    spans: set[tuple[int, int]] = set()
    for text in adversarial:
        for form in {text, json.dumps(text, ensure_ascii=False)[1:-1]}:
            start = observation.find(form)
            while form and start != -1:
                spans.add((start, start + len(form)))
                start = observation.find(form, start + 1)
    return sorted(spans)
