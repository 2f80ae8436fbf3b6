//! The private system layer: the only code in iocore that calls libc.
//!
//! Every call goes through `syscall!`, which turns C's `-1`-and-errno into an
//! `io::Result`. Each function here is safe to call with any argument: buffers arrive as
//! slices or are locals of the right type, and no function closes a descriptor it was
//! handed, so the rest of the crate needs no `unsafe`. Descriptors created here come back
//! as `OwnedFd` (or a type holding one), closed exactly once when dropped.
//!
//! Nothing here keeps state or picks a thread: each function runs on its caller's thread.

/// Calls `libc::$fn(args…)`, turning a `-1` return into the thread's errno as an
/// `io::Error`.
///
/// The macro hides the `unsafe` but not the obligation: every use carries a `// SAFETY:`
/// comment saying why its arguments are valid for that call. It is private to `sys`, so
/// every such use is in this directory.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the call site's own SAFETY comment states why these arguments are valid
        // for `$fn`; see the macro's documentation.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

pub(crate) mod epoll;
pub(crate) mod eventfd;
pub(crate) mod fd;
pub(crate) mod sched;
pub(crate) mod socket;
pub(crate) mod uring;
