"""vpmu: an executable model of Linux KVM's x86 vPMU and a checker for it.

Layers, bottom up (docs/architecture.md names every module and the imports each may make;
tests/test_structure.py enforces them): the vocabulary (`errors`, `config`, `msrs`, `events`,
`filter`, `pmc_map`, `actions`, `trace`); beside each other on it, the architectural reference
(`arch`, `reference`), the KVM model (`host`, `lapic`, `eras`, `designs`, `backing`, `kvm`,
`kvm_msr`, `world`; `kernel_source`, `kernel_design` for `kernel:PATH` designs) and the checker
(`divergence`, `tolerances`, `checker`); the run layer (`run`, `scenario`); the explorer
(`explore`); the front ends (`conformance`, `check`, `report`, `plot`, `cli`).
"""

__version__ = "0.1.0"
