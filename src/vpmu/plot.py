"""A timeline PNG of one run: each in-use counter (reference vs KVM) over the steps, with
wraps, GLOBAL_STATUS changes and PMIs marked and divergences in red (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vpmu.errors import VpmuError  # noqa: E402
from vpmu.outputs import replacing  # noqa: E402
from vpmu.pmc_map import counter_name  # noqa: E402
from vpmu.report import describe_action, in_use  # noqa: E402
from vpmu.run import RunResult  # noqa: E402


def _signed(v: int, width: int) -> int:
    return v - (1 << width) if v >> (width - 1) & 1 else v


def plot_run(res: RunResult, out: str | Path) -> None:
    cfg = res.cfg
    idx = cfg.pmc_indices
    used = [idx[n] for n in in_use(res)]
    steps = list(range(len(res.ref_obs)))
    fig, axes = plt.subplots(len(used) + 1, 1, figsize=(max(8.0, 1.1 * len(steps) + 3), 2.6 * len(used) + 2.2),
                             sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3] * len(used) + [1.6]})
    fig.suptitle(f"{res.name} — KVM {res.kvm} ({res.design}) vs reference — {res.verdict}",
                 fontsize=11, color="darkred" if res.failed else "darkgreen")
    for row, pmc in enumerate(used):
        ax = axes[row][0]
        n = idx.index(pmc)
        w = cfg.width_of(pmc)
        ref_v = [_signed(o.counters[n], w) for o in res.ref_obs]
        kvm_v = [_signed(o.counters[n], w) for o in res.kvm_obs]
        ax.plot(steps, ref_v, color="tab:blue", lw=2.2, marker="o", ms=7, label="reference")
        ax.plot(steps, kvm_v, color="tab:orange", lw=1.4, ls="--", marker="x", ms=8, label=f"KVM {res.kvm}")
        ax.axhline(0, color="grey", lw=0.6)
        for o in res.ref_obs:
            for s in o.signals:
                if s.pmc == pmc and s.source == "wrap":
                    ax.axvline(o.step, color="tab:blue", lw=0.8, ls=":")
                    ax.annotate(f"wrap @insn {s.insn}", (o.step, 0), textcoords="offset points",
                                xytext=(4, 6), fontsize=7, color="tab:blue")
        for o in res.kvm_obs:
            for s in o.signals:
                if s.pmc == pmc:
                    ax.annotate(f"KVM {s.source} signal", (o.step, 0), textcoords="offset points",
                                xytext=(4, -12), fontsize=7, color="tab:orange")
        shown = 0
        for d in res.divergences:
            if d.counter == counter_name(pmc) or (d.counter is None and row == 0):
                bad = not d.tolerated
                ax.axvspan(d.step - 0.3, d.step + 0.3, color="red" if bad else "gold", alpha=0.15 if bad else 0.25)
                label = d.label
                label += f" (tolerated, {d.relaxation})" if d.tolerated else ""
                ax.text(0.99, 0.05 + 0.11 * shown, f"step {d.step}: {label}", transform=ax.transAxes,
                        ha="right", va="bottom", fontsize=8, color="red" if bad else "darkgoldenrod")
                shown += 1
        ax.set_ylabel(f"{counter_name(pmc)}\n(signed value)")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    # status bits and PMIs
    ax = axes[-1][0]
    for n, pmc in enumerate(used):
        bit = 1 << pmc
        ref_b = [1 if o.global_status & bit else 0 for o in res.ref_obs]
        kvm_b = [1 if o.global_status & bit else 0 for o in res.kvm_obs]
        base = 2.5 * n
        xs = [*steps, len(steps) - 0.5]
        ax.step(xs, [base + 1.0 + b for b in [*ref_b, ref_b[-1]]], where="post", color="tab:blue", lw=2)
        ax.step(xs, [base + b for b in [*kvm_b, kvm_b[-1]]], where="post", color="tab:orange", lw=1.5, ls="--")
        ax.text(-0.75, base + 1.05, f"STATUS.{counter_name(pmc)}", fontsize=7, ha="left", va="bottom")
    top = 2.5 * len(used) + 0.3
    for o in res.ref_obs:
        for p in o.pmis:
            ax.plot([o.step], [top], marker="v", color="tab:blue", ms=9)
            ax.annotate(f"PMI @{p}", (o.step, top), textcoords="offset points", xytext=(6, -3), fontsize=7,
                        color="tab:blue")
    for o in res.kvm_obs:
        for p in o.pmis:
            ax.plot([o.step], [top - 0.6], marker="v", color="tab:orange", ms=9)
            ax.annotate("KVM", (o.step, top - 0.6), textcoords="offset points", xytext=(-26, -3), fontsize=7,
                        color="tab:orange")
            ax.annotate(f"PMI @{p}", (o.step, top - 0.6), textcoords="offset points", xytext=(6, -3),
                        fontsize=7, color="tab:orange")
    for d in res.divergences:
        if d.kind in ("lost-overflow", "spurious-overflow", "late-overflow", "missing-pmi", "extra-pmi",
                      "late-pmi"):
            ax.axvspan(d.step - 0.3, d.step + 0.3, color="red" if not d.tolerated else "gold", alpha=0.15)
    ax.set_yticks([])
    ax.set_ylim(-0.5, top + 0.8)
    ax.set_ylabel("STATUS bits, PMIs\nref solid / KVM dashed", fontsize=8)
    ax.set_xticks(steps)
    ax.set_xticklabels([f"{s}: {describe_action(o.action)}\ninsn {o.insn}" for s, o in zip(steps, res.ref_obs,
                                                                                          strict=True)],
                       rotation=30, ha="right", fontsize=7)
    ax.set_xlim(-0.8, len(steps) - 0.2)
    fig.tight_layout()
    try:
        with replacing(out) as tmp:
            fig.savefig(str(tmp), dpi=110, format="png")
    except OSError as e:
        raise VpmuError(f"cannot write plot {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
