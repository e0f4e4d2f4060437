"""The compact exploration kernel (`vpmu explore --engine kernel`).

* `machine` — both machines of an explored configuration as one flat tuple of ints and the
              pure step `Kernel.step(state, letter) -> (state', observation)`;
* `monitor` — the incremental judge: the open obligations since the last settled point;
* `engine`  — which configurations the kernel covers (`plan`), its BFS (`kernel_bfs`) and
              random search (`kernel_random`).

The object models (`vpmu.world.World`, `vpmu.reference.ReferenceMachine`, `vpmu.checker`)
stay the oracle: tests/test_compact.py compares the two engines on bounded spaces, and every
counterexample the kernel finds is replayed and shrunk on the object models.
"""

from .engine import KernelExpander, Plan, kernel_bfs, kernel_random, plan

__all__ = ["KernelExpander", "Plan", "kernel_bfs", "kernel_random", "plan"]
