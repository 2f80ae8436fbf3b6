//! `Action`: the handle to started work that lets its starter cancel it.
//!
//! The starter and the work share one `Action`. Cancelling runs the registered wake-up
//! hooks once (so blocked work notices at once) and the work, which holds
//! [`ActionGuard`]s while it runs, lets [`Action::wait_done`] observe that it has stopped.
//! Every method runs on its caller's thread, whichever it is; cancel hooks run on the
//! thread that cancels.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    cancelled: bool,
    hooks: Vec<Hook>,
    running: usize,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
    cancelled: std::sync::atomic::AtomicBool,
}

/// A cancellable handle to started work. Clones share the same state.
#[derive(Clone, Default)]
pub struct Action {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Action")
            .field("cancelled", &self.cancelled())
            .field("running", &self.running())
            .finish()
    }
}

/// Held by a piece of running work; dropping it tells the [`Action`] that piece stopped.
#[must_use = "the work counts as stopped when the guard is dropped"]
pub struct ActionGuard {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ActionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ActionGuard")
    }
}

impl Action {
    /// A new, live action with no running work.
    pub fn new() -> Action {
        Action::default()
    }

    /// Cancels the work: idempotent, callable from any thread including the work's own.
    pub fn cancel(&self) {
        let hooks = {
            let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.cancelled {
                return;
            }
            st.cancelled = true;
            self.inner
                .cancelled
                .store(true, std::sync::atomic::Ordering::Release);
            std::mem::take(&mut st.hooks)
        };
        for hook in hooks {
            hook();
        }
        self.inner.changed.notify_all();
    }

    /// Whether [`cancel`](Action::cancel) has been called. One atomic load.
    pub fn cancelled(&self) -> bool {
        self.inner
            .cancelled
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs `hook` when the action is cancelled (at once if it already is).
    pub fn on_cancel(&self, hook: impl FnOnce() + Send + 'static) {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.cancelled {
            drop(st);
            hook();
        } else {
            st.hooks.push(Box::new(hook));
        }
    }

    /// Marks one piece of work as running until the returned guard drops.
    pub fn enter(&self) -> ActionGuard {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running += 1;
        ActionGuard {
            inner: self.inner.clone(),
        }
    }

    /// How many pieces of work hold a guard now.
    pub fn running(&self) -> usize {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
    }

    /// Waits until no work holds a guard, or `timeout` passes; true if it all stopped.
    pub fn wait_done(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.running > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .inner
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl Drop for ActionGuard {
    fn drop(&mut self) {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        debug_assert!(st.running > 0, "guard count underflow");
        st.running -= 1;
        drop(st);
        self.inner.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn cancel_runs_hooks_once_and_late_hooks_at_once() {
        let a = Action::new();
        let n = Arc::new(AtomicUsize::new(0));
        let n1 = n.clone();
        a.on_cancel(move || {
            n1.fetch_add(1, Ordering::SeqCst);
        });
        a.cancel();
        a.cancel();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let n2 = n.clone();
        a.on_cancel(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 2);
        assert!(a.cancelled());
    }

    #[test]
    fn wait_done_sees_guards_drop() {
        let a = Action::new();
        let g = a.enter();
        assert!(!a.wait_done(Duration::from_millis(10)));
        let t = std::thread::spawn(move || drop(g));
        assert!(a.wait_done(Duration::from_secs(5)));
        t.join().unwrap();
    }
}
