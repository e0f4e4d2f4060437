"""A user design's failure (import, construction, a hook raising or returning the wrong type,
`sys.exit`) is one line naming the design file:line, the hook and the step; exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli_helper import cli

HEAD = "from vpmu.designs import EmulatedCounterDesign\n"
CASES = {
    # name: (source, expected hook part, expected message part, line of the failure)
    "import-error": ("import no_such_module_xyz\n", "import", "ModuleNotFoundError", 1),
    "syntax": ("def (:\n", "import", "SyntaxError", 1),
    "exit-at-import": ("import sys\nsys.exit(3)\n", "import", "calls sys.exit(3)", 2),
    "constructor-args": (HEAD + "class D(EmulatedCounterDesign):\n    def __init__(self, x):\n        self.x = x\n",
                         "constructor", "TypeError", 3),
    "hook-raises": (HEAD + "class D(EmulatedCounterDesign):\n    def pause_counter(self, kvm, pmc):\n"
                    "        raise RuntimeError('boom')\n", "hook pause_counter at step", "RuntimeError: boom", 4),
    "hook-exits": (HEAD + "import sys\nclass D(EmulatedCounterDesign):\n    def incr_counter(self, kvm, pmc):\n"
                   "        sys.exit(0)\n", "hook incr_counter at step", "calls sys.exit(0)", 5),
    "wrong-type": (HEAD + "class D(EmulatedCounterDesign):\n    def read_counter(self, kvm, pmc):\n"
                   "        return 'many'\n", "hook read_counter at step", "returned 'many', expected an integer", 3),
    "wrong-bool": (HEAD + "class D(EmulatedCounterDesign):\n    def pause_counter(self, kvm, pmc):\n"
                   "        super().pause_counter(kvm, pmc)\n        return 'yes'\n",
                   "hook pause_counter at step", "returned 'yes', expected true or false", 3),
    "bad-field": (HEAD + "class D(EmulatedCounterDesign):\n    def incr_counter(self, kvm, pmc):\n"
                  "        pmc.emulated_counter = None\n", "hook incr_counter at step", "left pmc.emulated_counter", 3),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failing_user_design_is_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, hook, message, line = CASES[case]
    path = tmp_path / f"{case.replace('-', '_')}.py"
    path.write_text(source)
    for cmd in (("run", "seed-lost-overflow"), ("run", "seed-lost-overflow", "--json")):
        code, out, err = cli(capsys, *cmd, "--design", f"{path}:D")
        assert code == 2, (out, err)
        assert out == "" and err.count("\n") == 1
        assert err.startswith(f"vpmu: error: {path}:{line}: design {path}:D: {hook}"), err
        assert message in err
        if "at step" in hook:  # the scenario step that ran the hook, with its file:line
            assert re.search(r"at step steps\[\d+\] \(builtin:seed-lost-overflow:\d+\): ", err), err


def test_a_failing_hook_in_explore_and_check_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.py"
    path.write_text(CASES["hook-raises"][0])
    code, _, err = cli(capsys, "explore", "--design", f"{path}:D", "--mode", "random", "--restarts", "3",
                       "--jobs", "1", "--no-save")
    assert code == 2 and err.startswith(f"vpmu: error: {path}:4: design {path}:D: hook pause_counter at step")
    code, _, err = cli(capsys, "check", f"{path}:D", "--restarts", "3", "--no-save", "--depth", "2")
    assert code == 2 and err.startswith(f"vpmu: error: {path}:4: design {path}:D: hook pause_counter at step")
