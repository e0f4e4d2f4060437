"""The compact exploration kernel (`vpmu explore --engine kernel`).

* `machine` — both machines of an explored configuration as one flat tuple of ints and the
              pure step `Kernel.step(state, letter) -> (state', observation)`;
* `monitor` — the incremental judge: the open obligations since the last settled point;
* `engine`  — which configurations the kernel covers (`plan`) and its BFS (`kernel_bfs`).

The object models (`vpmu.world.World`, `vpmu.reference.ReferenceMachine`, `vpmu.checker`)
stay the oracle: tests/test_compact.py compares the two engines on bounded spaces, and every
counterexample the kernel finds is replayed and shrunk on the object models.
"""

from .engine import Plan, kernel_bfs, plan

__all__ = ["Plan", "kernel_bfs", "plan"]
