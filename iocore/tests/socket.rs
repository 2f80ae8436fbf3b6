//! Outbound sockets: a connect reports established once the handshake is done, and
//! never when the peer refused it.

mod util;

use iocore::Socket;
use std::net::TcpListener;
use std::time::Duration;
use util::wait_until;

#[test]
fn a_connect_is_established_once_the_handshake_is_done() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let s = Socket::connect(l.local_addr().unwrap()).unwrap();
    // Loopback handshakes complete in the kernel without an accept.
    assert!(wait_until(Duration::from_secs(5), || s.is_established()));
    assert!(s.take_error().unwrap().is_none());
}

#[test]
fn a_refused_connect_is_never_established() {
    // A port nothing listens on: bind one, note it, close it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let Ok(s) = Socket::connect(addr) else {
        return; // refused before connect returned: nothing to be established
    };
    assert!(wait_until(Duration::from_secs(5), || matches!(
        s.take_error(),
        Ok(Some(_))
    )));
    assert!(!s.is_established());
}
