/*
 * vpmu kernel shim: the few kernel types and helpers that the counter-tracking functions of
 * arch/x86/kvm/pmu.c and pmu.h use, each mapped onto vpmu's model of KVM.
 *
 * vpmu's own code (not kernel code). vpmu.kernel_design extracts a tree's kvm_pmu_incr_counter,
 * pmc_pause_counter (+ the emulated-overflow test of reprogram_counter), pmc_read_counter and
 * pmc_write_counter, compiles them after this header and runs them on ONE PMC at a time: the
 * "frame" below. Python fills vpmu_state[] from the model's KvmPmc before a call and reads it
 * back afterwards; every helper that reaches into the model (perf, requests, sample period)
 * first hands the frame to Python and takes it back afterwards, so C and model never disagree.
 * Anything not defined here is a compile error that vpmu reports by name: nothing is stubbed.
 */
#ifndef VPMU_KERNEL_SHIM_H
#define VPMU_KERNEL_SHIM_H

#include <stdbool.h>
#include <stddef.h>

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long long s64;

_Static_assert(sizeof(unsigned long) == 8, "vpmu's shim models an LP64 (x86-64) kernel");

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define BIT(nr)     (1UL << (nr))
#define BIT_ULL(nr) (1ULL << (nr))

/* PMC indices: GP i <-> i, fixed i <-> 32 + i (both names the kernel has used). */
#define INTEL_PMC_IDX_FIXED    32
#define KVM_FIXED_PMC_BASE_IDX 32

/* Request numbers as the shim passes them to vpmu (mapped onto vpmu.kvm.REQ_*). */
#define KVM_REQ_PMU 1
#define KVM_REQ_PMI 2

enum pmc_type { KVM_PMC_GP = 0, KVM_PMC_FIXED = 1 };

/* The host perf event is the model's vpmu.host.PerfEvent; C only sees whether there is one. */
struct perf_event { int vpmu_opaque; };

/* The parts of struct kvm_pmu the seam functions touch. */
struct kvm_pmu {
	u64 counter_bitmask[2];
	unsigned long reprogram_pmi[1];
};

struct kvm_vcpu {
	struct { struct kvm_pmu pmu; } arch;
};

/* struct kvm_pmc, both eras' fields (prev_counter: v6.1-v6.7, emulated_counter: v6.8+). */
struct kvm_pmc {
	enum pmc_type type;
	u8 idx;
	bool is_paused;
	bool intr;
	u64 counter;
	u64 prev_counter;
	u64 emulated_counter;
	u64 eventsel;
	struct perf_event *perf_event;
	struct kvm_vcpu *vcpu;
	u64 current_config;
};

#define pmc_to_pmu(pmc) (&(pmc)->vcpu->arch.pmu)

/* --- the frame: the one PMC a call works on, and its exchange with the model ------------ */

/* Slot order of vpmu_state[]; vpmu.kernel_design checks it against its own list at load. */
#define VPMU_SLOTS "counter,prev_counter,emulated_counter,is_paused,reprogram_pmi," \
		   "type,idx,intr,eventsel,current_config,perf_event,gp_bitmask,fixed_bitmask"
#define VPMU_NR_SLOTS 13

u64 vpmu_state[VPMU_NR_SLOTS];

static struct perf_event vpmu_perf;
static struct kvm_vcpu vpmu_vcpu;
static struct kvm_pmc vpmu_pmc = { .vcpu = &vpmu_vcpu };

/* Model -> C: load the frame from vpmu_state[]. */
static void vpmu_from_model(void)
{
	const u64 *s = vpmu_state;

	vpmu_pmc.counter = s[0];
	vpmu_pmc.prev_counter = s[1];
	vpmu_pmc.emulated_counter = s[2];
	vpmu_pmc.is_paused = s[3] != 0;
	vpmu_vcpu.arch.pmu.reprogram_pmi[0] = s[4];
	vpmu_pmc.type = s[5] ? KVM_PMC_FIXED : KVM_PMC_GP;
	vpmu_pmc.idx = (u8)s[6];
	vpmu_pmc.intr = s[7] != 0;
	vpmu_pmc.eventsel = s[8];
	vpmu_pmc.current_config = s[9];
	vpmu_pmc.perf_event = s[10] ? &vpmu_perf : NULL;
	vpmu_vcpu.arch.pmu.counter_bitmask[KVM_PMC_GP] = s[11];
	vpmu_vcpu.arch.pmu.counter_bitmask[KVM_PMC_FIXED] = s[12];
	vpmu_pmc.vcpu = &vpmu_vcpu;
}

/* C -> model: store the frame into vpmu_state[] (Python rejects changes to read-only slots). */
static void vpmu_to_model(void)
{
	u64 *s = vpmu_state;

	s[0] = vpmu_pmc.counter;
	s[1] = vpmu_pmc.prev_counter;
	s[2] = vpmu_pmc.emulated_counter;
	s[3] = vpmu_pmc.is_paused;
	s[4] = vpmu_vcpu.arch.pmu.reprogram_pmi[0];
	s[5] = vpmu_pmc.type;
	s[6] = vpmu_pmc.idx;
	s[7] = vpmu_pmc.intr;
	s[8] = vpmu_pmc.eventsel;
	s[9] = vpmu_pmc.current_config;
	s[10] = vpmu_pmc.perf_event != NULL;
	s[11] = vpmu_vcpu.arch.pmu.counter_bitmask[KVM_PMC_GP];
	s[12] = vpmu_vcpu.arch.pmu.counter_bitmask[KVM_PMC_FIXED];
}

/* --- calls into the model (bound by vpmu_bind(); all act on the frame's PMC) ------------ */

typedef u64 (*vpmu_model_fn)(u64 arg);
typedef void (*vpmu_fault_fn)(const char *what);

static vpmu_model_fn vpmu_model_perf_pause, vpmu_model_perf_read, vpmu_model_update_period,
		     vpmu_model_request_reprogram, vpmu_model_make_request;
static vpmu_fault_fn vpmu_model_fault;

/* Run one model helper with the frame handed over and taken back around it. */
static u64 vpmu_model_call(vpmu_model_fn fn, u64 arg)
{
	u64 ret;

	vpmu_to_model();
	ret = fn(arg);
	vpmu_from_model();
	return ret;
}

/* A call the model cannot honour (another PMC, a NULL event): reported, never guessed. */
static bool vpmu_check(bool ok, const char *what)
{
	if (!ok)
		vpmu_model_fault(what);
	return ok;
}

/* --- the kernel helpers -------------------------------------------------------------------- */

static inline bool pmc_is_gp(struct kvm_pmc *pmc) { return pmc->type == KVM_PMC_GP; }
static inline bool pmc_is_fixed(struct kvm_pmc *pmc) { return pmc->type == KVM_PMC_FIXED; }

/* pmc_bitmask() (pmu.h): the width mask, from the model's kvm_pmu.counter_bitmask. */
static inline u64 pmc_bitmask(struct kvm_pmc *pmc)
{
	return pmc_to_pmu(pmc)->counter_bitmask[pmc->type];
}

/* perf_event_pause(event, reset) -> KvmVcpu.perf_pause(): fold-and-zero the modelled count. */
static inline u64 perf_event_pause(struct perf_event *event, bool reset)
{
	if (!vpmu_check(event != NULL, "perf_event_pause(NULL): the PMC has no perf event")
	    || !vpmu_check(event == &vpmu_perf, "perf_event_pause() on an event that is not the PMC's")
	    || !vpmu_check(reset, "perf_event_pause(reset=false), which vpmu does not model"))
		return 0;
	return vpmu_model_call(vpmu_model_perf_pause, 0);
}

/* perf_event_read_value() -> KvmVcpu.perf_read(); the model has no multiplexing, so the
 * enabled and running times are reported as 0 (KVM ignores them). */
static inline u64 perf_event_read_value(struct perf_event *event, u64 *enabled, u64 *running)
{
	*enabled = 0;
	*running = 0;
	if (!vpmu_check(event != NULL, "perf_event_read_value(NULL): the PMC has no perf event")
	    || !vpmu_check(event == &vpmu_perf, "perf_event_read_value() on an event that is not the PMC's"))
		return 0;
	return vpmu_model_call(vpmu_model_perf_read, 0);
}

/* pmc_update_sample_period() -> KvmVcpu.pmc_update_sample_period(). */
static inline void pmc_update_sample_period(struct kvm_pmc *pmc)
{
	if (vpmu_check(pmc == &vpmu_pmc, "pmc_update_sample_period() on another PMC"))
		vpmu_model_call(vpmu_model_update_period, 0);
}

/* kvm_pmu_request_counter_reprogram() -> KvmVcpu.kvm_pmu_request_counter_reprogram(). */
static inline void kvm_pmu_request_counter_reprogram(struct kvm_pmc *pmc)
{
	if (vpmu_check(pmc == &vpmu_pmc, "kvm_pmu_request_counter_reprogram() on another PMC"))
		vpmu_model_call(vpmu_model_request_reprogram, 0);
}
/* Older trees (v6.1 era) spelled it without the second "r". */
#define kvm_pmu_request_counter_reprogam kvm_pmu_request_counter_reprogram

/* kvm_make_request() -> KvmVcpu.make_request() for KVM_REQ_PMU / KVM_REQ_PMI. */
static inline void kvm_make_request(int req, struct kvm_vcpu *vcpu)
{
	if (vpmu_check(vcpu == &vpmu_vcpu, "kvm_make_request() for another vCPU"))
		vpmu_model_call(vpmu_model_make_request, (u64)req);
}

/* Bit operations on the frame's bitmaps (reprogram_pmi); atomicity is moot in one thread. */
static inline bool test_bit(long nr, const volatile unsigned long *addr)
{
	return (addr[nr / 64] >> (nr % 64)) & 1;
}
static inline void __set_bit(long nr, volatile unsigned long *addr) { addr[nr / 64] |= 1UL << (nr % 64); }
static inline void __clear_bit(long nr, volatile unsigned long *addr) { addr[nr / 64] &= ~(1UL << (nr % 64)); }
static inline void set_bit(long nr, volatile unsigned long *addr) { __set_bit(nr, addr); }
static inline void clear_bit(long nr, volatile unsigned long *addr) { __clear_bit(nr, addr); }
static inline bool test_and_set_bit(long nr, volatile unsigned long *addr)
{
	bool old = test_bit(nr, addr);

	__set_bit(nr, addr);
	return old;
}
static inline bool test_and_clear_bit(long nr, volatile unsigned long *addr)
{
	bool old = test_bit(nr, addr);

	__clear_bit(nr, addr);
	return old;
}

/* Generated after the extracted functions (see vpmu.kernel_source). */
static bool vpmu_emulated_overflow(struct kvm_pmc *pmc);
static void vpmu_reprogram_complete_tail(struct kvm_pmc *pmc);

#endif /* VPMU_KERNEL_SHIM_H */
