//! `ProxyMutex`: the lock a continuation runs under, built for `try_lock`.
//!
//! An event thread never blocks on a `ProxyMutex`: it try-locks and, failing, retries the
//! event later. Threads that may block (tests, control paths) use [`ProxyMutex::lock`].

use crossbeam_utils::Backoff;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A data-less mutual-exclusion lock with a non-blocking `try_lock`.
#[derive(Debug, Default)]
pub struct ProxyMutex {
    locked: AtomicBool,
}

/// Holding this means holding the [`ProxyMutex`]; dropping it releases the lock.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct ProxyMutexGuard<'a> {
    mutex: &'a ProxyMutex,
}

impl ProxyMutex {
    /// A new, unlocked mutex.
    pub fn new() -> ProxyMutex {
        ProxyMutex::default()
    }

    /// Takes the lock if it is free, without waiting.
    pub fn try_lock(&self) -> Option<ProxyMutexGuard<'_>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| ProxyMutexGuard { mutex: self })
    }

    /// Takes the lock, waiting as long as needed. Never call this on an event thread.
    pub fn lock(&self) -> ProxyMutexGuard<'_> {
        let backoff = Backoff::new();
        loop {
            if let Some(g) = self.try_lock() {
                return g;
            }
            if backoff.is_completed() {
                std::thread::sleep(Duration::from_micros(100));
            } else {
                backoff.snooze();
            }
        }
    }
}

impl Drop for ProxyMutexGuard<'_> {
    fn drop(&mut self) {
        self.mutex.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_lock_fails_while_held_and_succeeds_after() {
        let m = ProxyMutex::new();
        let g = m.try_lock().expect("free");
        assert!(m.try_lock().is_none());
        drop(g);
        assert!(m.try_lock().is_some());
    }
}
