/* vpmu test tree (vpmu's own code): the pmu.h of an emulated_counter-era KVM, reduced. */
#ifndef VPMU_TEST_PMU_H
#define VPMU_TEST_PMU_H

static inline u64 pmc_bitmask(struct kvm_pmc *pmc)
{
	return pmc_to_pmu(pmc)->counter_bitmask[pmc->type];
}

/* Guest view: base + unprocessed emulated events + the running perf count. */
static inline u64 pmc_read_counter(struct kvm_pmc *pmc)
{
	u64 value = pmc->counter + pmc->emulated_counter, en, run;

	if (pmc->perf_event && !pmc->is_paused)
		value += perf_event_read_value(pmc->perf_event, &en, &run);
	return value & pmc_bitmask(pmc);
}

void pmc_write_counter(struct kvm_pmc *pmc, u64 val);

#endif
