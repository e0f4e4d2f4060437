// vpmu test tree (vpmu's own code): the pmu.c of an emulated_counter-era KVM, reduced.
#include "pmu.h"

static u64 get_sample_period(struct kvm_pmc *pmc, u64 value)
{
	u64 period = (-value) & pmc_bitmask(pmc);

	return period ? period : pmc_bitmask(pmc) + 1;
}

/* Fold perf, snapshot, then add the emulated events: report a wrap they alone caused. */
static bool pmc_pause_counter(struct kvm_pmc *pmc)
{
	u64 value = pmc->counter;
	u64 snapshot;

	if (pmc->perf_event && !pmc->is_paused)
		value += perf_event_pause(pmc->perf_event, true);
	snapshot = value & pmc_bitmask(pmc);
	value += pmc->emulated_counter;
	pmc->counter = value & pmc_bitmask(pmc);
	pmc->emulated_counter = 0;
	pmc->is_paused = true;
	return pmc->counter < snapshot;
}

static void pmc_update_sample_period(struct kvm_pmc *pmc)
{
	if (pmc->perf_event && !pmc->is_paused)
		perf_event_period(pmc->perf_event, get_sample_period(pmc, pmc->counter));
}

/* A write drops pending emulated events, then rebases, then re-arms perf. */
void pmc_write_counter(struct kvm_pmc *pmc, u64 val)
{
	pmc->emulated_counter = 0;
	pmc->counter += val - pmc_read_counter(pmc);
	pmc->counter &= pmc_bitmask(pmc);
	pmc_update_sample_period(pmc);
}
EXPORT_SYMBOL_GPL(pmc_write_counter);

static int reprogram_counter(struct kvm_pmc *pmc)
{
	bool wrapped;

	wrapped = pmc_pause_counter(pmc);

	if (!pmc_event_is_allowed(pmc))
		return 0;

	if (wrapped)
		__kvm_perf_overflow(pmc, false);

	if (pmc_current_config_matches(pmc) && pmc_resume_counter(pmc))
		return 0;
	return pmc_create_perf_event(pmc);
}

/* Emulated events wait in their own field until the next reprogram. */
static void kvm_pmu_incr_counter(struct kvm_pmc *pmc)
{
	pmc->emulated_counter++;
	kvm_pmu_request_counter_reprogram(pmc);
}
