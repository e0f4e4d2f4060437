"""The compact exploration kernel (`vpmu explore --engine kernel`).

* `machine` — both machines of an explored configuration as one flat tuple of ints and the
              pure step `Kernel.step(state, letter) -> (state', observation)`;
* `monitor` — the incremental judge: the open obligations since the last settled point;
* `engine`  — which configurations the kernel covers (`plan`), its BFS (`kernel_bfs`) and
              random search (`kernel_random`), and `kernel_search`, which runs the BFS
              compiled where it can;
* `kstep`, `compiled` — the step as array code numba compiles, and the whole BFS as one
              compiled loop (`compiled_bfs`).

The object models (`vpmu.world.World`, `vpmu.reference.ReferenceMachine`, `vpmu.checker`)
stay the oracle: tests/test_compact.py compares the two engines on bounded spaces, and every
counterexample the kernel finds is replayed and shrunk on the object models.
"""

from .engine import KernelExpander, Plan, compiled_search, kernel_bfs, kernel_random, kernel_search, plan

__all__ = ["KernelExpander", "Plan", "compiled_search", "kernel_bfs", "kernel_random", "kernel_search", "plan"]
