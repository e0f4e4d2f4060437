// vpmu test tree (vpmu's own code): the pmu.c of a prev_counter-era KVM, reduced.
#include "pmu.h"

static const char *vpmu_banner = "a string with { braces } and a // non-comment";

static void __kvm_perf_overflow(struct kvm_pmc *pmc, bool in_pmi)
{
	/* Not part of the seam: the model has its own. } */
	pmc_to_pmu(pmc)->global_status |= 1ull << pmc->idx;
}

/* Fold the perf count into the base; no overflow check here in this era. */
static void pmc_pause_counter(struct kvm_pmc *pmc)
{
	u64 value = pmc->counter;

	if (!pmc->perf_event || pmc->is_paused)
		return;
	value += perf_event_pause(pmc->perf_event, true);
	pmc->counter = value & pmc_bitmask(pmc);
	pmc->is_paused = true;
}

static void reprogram_counter(struct kvm_pmc *pmc)
{
	pmc_pause_counter(pmc);

	if (!pmc_event_is_allowed(pmc))
		goto reprogram_complete;

	if (pmc->counter < pmc->prev_counter)
		__kvm_perf_overflow(pmc, false);

	if (pmc_current_config_matches(pmc) && pmc_resume_counter(pmc))
		goto reprogram_complete;

	if (pmc_create_perf_event(pmc))
		return;

reprogram_complete:
	clear_bit(pmc->idx, (unsigned long *)&pmc_to_pmu(pmc)->reprogram_pmi);
	pmc->prev_counter = 0;
}

/* One event retired by emulation: bump the base, remember the old value. */
static void kvm_pmu_incr_counter(struct kvm_pmc *pmc)
{
	pmc->prev_counter = pmc->counter;
	pmc->counter = (pmc->counter + 1) & pmc_bitmask(pmc);
	kvm_pmu_request_counter_reprogram(pmc);
}
