//! Turnstile's runtime.
//!
//! `iocore` owns the threads and sockets of the daemon and nothing of HTTP, the cache or
//! records.toml: every knob arrives as a plain option struct.
//!
//! - [`eventsystem`]: ET_NET event threads ([`EThread`]), events and timers, try-lock
//!   mutexes ([`ProxyMutex`]), cancellable [`Action`]s.
//! - [`net`]: listening sockets, the [`NetProcessor`] accept subsystem in its three modes
//!   (dedicated accept threads, event-thread accept, periodic `NetAccept` events) and the
//!   two-phase [`NetConnection`] whose drop is the only way a client socket closes.
//! - [`stats`]: named counters, gauges and histograms cheap enough for the accept path.
//!
//! Dependencies run one way: `net` uses `eventsystem`, both use `stats`, and both reach
//! the kernel only through the private `sys` layer, the one place with `unsafe`. Within
//! each module, files depend on each other one way too (see the modules' docs).
#![deny(missing_docs, unreachable_pub)]

pub mod eventsystem;
pub mod net;
pub mod stats;
mod sys;

pub use eventsystem::{
    fair_share, Action, ActionGuard, EThread, Event, EventHandle, EventProcessor,
    EventProcessorOptions, Hold, Interest, IoHandler, ProxyMutex, ProxyMutexGuard, Ready,
    ThreadRef, Token, Verdict, BUSY_QUEUE, BUSY_WINDOW,
};
pub use net::{
    migrate_req_enabled, AcceptMode, AcceptOptions, Acceptor, Dispatch, ListenOptions, Listener,
    NetConnection, NetProcessor, NetTuning, SendBatch, SockOptions, Socket, ThrottleMode,
};
pub use stats::Registry;
