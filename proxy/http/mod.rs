//! HTTP/1.1: the wire codec, remap rules, and the session state machine that proxies
//! requests and relays blind tunnels.

/// HTTP caching rules and the stored object. Public only to the fuzz targets (built
/// with the `fuzzing` feature); the daemon's own code is its only other user.
#[cfg(feature = "fuzzing")]
pub mod caching;
#[cfg(not(feature = "fuzzing"))]
#[allow(unreachable_pub)] // its `pub` items are for the fuzz targets
pub(crate) mod caching;
pub mod codec;
pub mod field_names;
pub mod fields;
pub mod parent;
pub mod proxy_protocol;
pub mod remap;
pub(crate) mod resolve;
pub(crate) mod revalidate;
pub(crate) mod session;
pub(crate) mod shared;

pub use session::PortRole;
pub use shared::{HttpSettings, HttpShared, Live, Timeouts};

use iocore::{Acceptor, EThread, NetConnection};
use std::sync::Arc;

/// The acceptor of an HTTP or blind port: starts a session on the connection's thread.
pub struct HttpAcceptor {
    /// Shared settings and metrics.
    pub shared: Arc<HttpShared>,
    /// What the port does.
    pub role: PortRole,
    /// The port terminates TLS (`ssl`).
    pub ssl: bool,
}

impl Acceptor for HttpAcceptor {
    fn accept(&self, conn: NetConnection, thread: &mut EThread) {
        session::start(conn, self.shared.clone(), &self.role, self.ssl, thread);
    }
}
