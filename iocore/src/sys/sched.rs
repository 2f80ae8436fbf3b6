//! The calling thread's scheduling policy.

use std::io;

/// Puts the calling thread under SCHED_BATCH (Linux) if it runs under the default
/// policy (SCHED_OTHER): it keeps its fair share of CPU and its nice value, but its
/// wake-ups do not preempt the thread running on the CPU; it runs at the next scheduling
/// point instead. Allowed without privileges. A thread under another policy (an
/// operator's SCHED_FIFO, SCHED_RR or SCHED_IDLE, e.g. systemd's CPUSchedulingPolicy)
/// keeps it.
pub(crate) fn set_batch_policy() -> io::Result<()> {
    // SAFETY: pid 0 is the calling thread; sched_getscheduler touches no memory.
    if syscall!(sched_getscheduler(0))? != libc::SCHED_OTHER {
        return Ok(());
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param that outlives
    // the call, and SCHED_BATCH takes priority 0.
    syscall!(sched_setscheduler(0, libc::SCHED_BATCH, &param)).map(drop)
}
