//! Net: listening sockets, the [`NetProcessor`] and its accept modes, connections.
//!
//! The accept path, one file per mode, each saying which thread runs which line:
//! - `accept_threads.rs`: dedicated blocking accept threads (`accept_threads > 0`), and
//!   the one thread that drains a socket being retired until its queue stays empty;
//! - `accept_event.rs`: the listening socket on every ET_NET thread's epoll;
//! - `accept_periodic.rs`: `NetAccept` events that try-lock the port's mutex each period;
//! - `accept.rs`: the step they share: accept4, error classes, throttle, hand-off.
//!
//! Beside them, `send_batch.rs`: an event thread's sends of a batch in one io_uring
//! submission.
//!
//! Files depend on each other one way: `options.rs`, `listener.rs`, `socket.rs` and
//! `send_batch.rs` need nothing else here; `connection.rs` needs `options.rs`; `shared.rs` (what every port's
//! accept loops share) needs those; `accept.rs` needs `shared.rs`; the three modes need
//! `accept.rs`; and `processor.rs`, on top, needs them all while nothing needs it.

mod accept;
mod accept_event;
mod accept_periodic;
mod accept_threads;
mod connection;
mod listener;
mod options;
mod processor;
mod send_batch;
mod shared;
mod socket;

pub use accept::Acceptor;
pub use connection::NetConnection;
pub use listener::{migrate_req_enabled, somaxconn, ListenError, ListenOptions, Listener};
pub use options::{AcceptMode, AcceptOptions, Dispatch, NetTuning, SockOptions, ThrottleMode};
pub use processor::NetProcessor;
pub use send_batch::SendBatch;
pub use socket::Socket;
