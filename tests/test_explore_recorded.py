"""The explorer's states, transitions and counterexamples on every era equal a recorded run.

A guard for refactors: a change that alters what the search visits or finds must re-record
(`python tests/record_explore.py`) and say why in its commit.
"""

from __future__ import annotations

import json

from record_explore import RECORDED, snapshot


def test_explorer_matches_the_recorded_run() -> None:
    recorded = json.loads(RECORDED.read_text(encoding="utf-8"))
    fresh = snapshot()
    assert sorted(fresh) == sorted(recorded)
    for case in recorded:
        assert fresh[case] == recorded[case], case
