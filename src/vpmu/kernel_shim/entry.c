/*
 * vpmu kernel shim: the entry points vpmu.kernel_design calls, included at the end of the
 * generated translation unit (after the extracted kernel functions). vpmu's own code.
 * Each entry loads the frame from vpmu_state[], runs one seam function, stores it back.
 */

const char *vpmu_slots(void)
{
	return VPMU_SLOTS;
}

void vpmu_bind(vpmu_model_fn perf_pause, vpmu_model_fn perf_read, vpmu_model_fn update_period,
	       vpmu_model_fn request_reprogram, vpmu_model_fn make_request, vpmu_fault_fn fault)
{
	vpmu_model_perf_pause = perf_pause;
	vpmu_model_perf_read = perf_read;
	vpmu_model_update_period = update_period;
	vpmu_model_request_reprogram = request_reprogram;
	vpmu_model_make_request = make_request;
	vpmu_model_fault = fault;
}

void vpmu_incr_counter(void)
{
	vpmu_from_model();
	kvm_pmu_incr_counter(&vpmu_pmc);
	vpmu_to_model();
}

bool vpmu_pause_counter(void)
{
	bool wrapped;

	vpmu_from_model();
	wrapped = vpmu_emulated_overflow(&vpmu_pmc);
	vpmu_to_model();
	return wrapped;
}

u64 vpmu_read_counter(void)
{
	u64 value;

	vpmu_from_model();
	value = pmc_read_counter(&vpmu_pmc);
	vpmu_to_model();
	return value;
}

void vpmu_write_counter(u64 val)
{
	vpmu_from_model();
	pmc_write_counter(&vpmu_pmc, val);
	vpmu_to_model();
}

void vpmu_reprogram_complete(void)
{
	vpmu_from_model();
	vpmu_reprogram_complete_tail(&vpmu_pmc);
	vpmu_to_model();
}
