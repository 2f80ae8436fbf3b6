//! The event system: ET_NET threads, events, timers, try-lock mutexes and actions.
//!
//! Each [`EThread`] is one loop on one OS thread: wait on epoll (bounded by the next
//! timer), run ready I/O handlers, run due timers, then drain the thread's inbound queue
//! (other threads' work, woken by an eventfd). `&mut EThread` exists only on its own
//! thread, so any function taking it says by its signature which thread runs it; other
//! threads hold a [`ThreadRef`] and can only send work.

mod action;
mod ethread;
mod event;
mod mutex;
mod processor;

pub use action::{Action, ActionGuard};
pub use ethread::{
    current_thread_id, EThread, Interest, IoHandler, Ready, ThreadRef, Token, Verdict,
};
pub use event::{Event, EventHandle};
pub use mutex::{ProxyMutex, ProxyMutexGuard};
pub use processor::{EventProcessor, EventProcessorOptions};
