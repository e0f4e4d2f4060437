"""vpmu: an executable model of Linux KVM's x86 vPMU and a checker for it.

Layers (see docs/architecture.md): configuration (`config`, `msrs`, `events`),
the architectural reference PMU (`arch`), the KVM model (`host`, `kvm`, `designs`,
`world`), the shared guest-action vocabulary (`actions`) and observation records
(`trace`), the checker, scenario files and the CLI on top.
"""

__version__ = "0.1.0"
