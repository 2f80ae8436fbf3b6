//! Ports start exactly once, by whichever of start-up and cache-ready comes second.
//!
//! One atomic holds both facts; each side sets its bit with `fetch_or`, and the side that
//! completes the pair starts the ports. No lock is held across the start.

use std::sync::atomic::{AtomicU8, Ordering};

const STARTUP_DONE: u8 = 1;
const CACHE_READY: u8 = 2;

/// The two-party start gate of SPEC §5.
#[derive(Debug, Default)]
pub struct StartGate {
    state: AtomicU8,
}

impl StartGate {
    /// A closed gate.
    pub fn new() -> StartGate {
        StartGate::default()
    }

    /// Start-up has bound the ports: true if the caller must now start them.
    pub fn startup_done(&self) -> bool {
        self.arrive(STARTUP_DONE)
    }

    /// The cache is ready (well or not): true if the caller must now start the ports.
    pub fn cache_ready(&self) -> bool {
        self.arrive(CACHE_READY)
    }

    fn arrive(&self, bit: u8) -> bool {
        let before = self.state.fetch_or(bit, Ordering::AcqRel);
        before & bit == 0 && (before | bit) == STARTUP_DONE | CACHE_READY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[test]
    fn whichever_comes_second_starts_once() {
        let g = StartGate::new();
        assert!(!g.cache_ready());
        assert!(g.startup_done());
        assert!(!g.startup_done());
        assert!(!g.cache_ready());
    }

    #[test]
    fn racing_sides_start_exactly_once() {
        for _ in 0..200 {
            let g = Arc::new(StartGate::new());
            let starts = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = [true, false]
                .into_iter()
                .map(|first| {
                    let (g, s) = (g.clone(), starts.clone());
                    std::thread::spawn(move || {
                        let go = if first {
                            g.startup_done()
                        } else {
                            g.cache_ready()
                        };
                        if go {
                            s.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(starts.load(Ordering::SeqCst), 1);
        }
    }
}
