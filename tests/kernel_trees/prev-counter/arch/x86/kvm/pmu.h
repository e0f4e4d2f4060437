/* vpmu test tree (vpmu's own code): the pmu.h of a prev_counter-era KVM, reduced. */
#ifndef VPMU_TEST_PMU_H
#define VPMU_TEST_PMU_H

#define pmc_to_pmu(pmc) (&(pmc)->vcpu->arch.pmu)

static inline u64 pmc_bitmask(struct kvm_pmc *pmc)
{
	return pmc_to_pmu(pmc)->counter_bitmask[pmc->type];
}

/* Guest view: the stored base plus whatever the running perf event holds. */
static inline u64 pmc_read_counter(struct kvm_pmc *pmc)
{
	u64 value = pmc->counter, en, run;

	if (pmc->perf_event && !pmc->is_paused)
		value += perf_event_read_value(pmc->perf_event, &en, &run);
	return value & pmc_bitmask(pmc);
}

/* Rebase so the guest reads back "val"; callers re-arm the sample period. */
static inline void pmc_write_counter(struct kvm_pmc *pmc, u64 val)
{
	pmc->counter += val - pmc_read_counter(pmc);
	pmc->counter &= pmc_bitmask(pmc);
}

static inline void kvm_pmu_request_counter_reprogram(struct kvm_pmc *pmc)
{
	set_bit(pmc->idx, pmc_to_pmu(pmc)->reprogram_pmi);
	kvm_make_request(KVM_REQ_PMU, pmc->vcpu);
}

void kvm_pmu_handle_event(struct kvm_vcpu *vcpu);

#endif
