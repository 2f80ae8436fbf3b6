//! The event system: ET_NET threads, events, timers, try-lock mutexes and actions.
//!
//! Each [`EThread`] is one loop on one OS thread: wait on epoll (bounded by the next
//! timer), run ready I/O handlers, run due timers, then drain the thread's inbound queue
//! (other threads' work, woken by an eventfd). `&mut EThread` exists only on its own
//! thread, so any function taking it says by its signature which thread runs it; other
//! threads hold a [`ThreadRef`] and can only send work.
//!
//! Files depend on each other one way, from the bottom up:
//! - `action.rs`, `mutex.rs`: [`Action`] and [`ProxyMutex`], used by any thread;
//! - `io.rs`: [`Interest`], [`Ready`], [`Token`], [`Verdict`] and a thread's I/O table;
//! - `timer.rs`: a thread's timer heap;
//! - `poll_errors.rs`: counting failed waits and wake-ups;
//! - `remote.rs`: the half of a thread other threads touch (inbox, waker, flags);
//! - `event.rs`: [`EventHandle`], cancellable from any thread;
//! - `ethread.rs`: [`EThread`] and its loop, with [`IoHandler`], [`Event`], [`ThreadRef`];
//! - `processor.rs`: [`EventProcessor`], which starts and stops the threads.

mod action;
mod ethread;
mod event;
mod io;
mod mutex;
pub(crate) mod poll_errors;
mod processor;
mod remote;
mod timer;

pub use action::{Action, ActionGuard};
pub use ethread::{current_thread_id, EThread, Event, Hold, IoHandler, ThreadRef};
pub use event::EventHandle;
pub use io::{Interest, Ready, Token, Verdict};
pub use mutex::{ProxyMutex, ProxyMutexGuard};
pub use processor::{fair_share, EventProcessor, EventProcessorOptions, BUSY_QUEUE, BUSY_WINDOW};
