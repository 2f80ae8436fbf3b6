//! Listening sockets: options, IPv6, inherited descriptors, SO_REUSEPORT siblings.

mod util;

use iocore::net::somaxconn;
use iocore::{ListenOptions, Listener};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};

fn sockopt(fd: i32, level: i32, name: i32) -> i32 {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v`/`len` are live and sized for a c_int.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) };
    assert_eq!(r, 0);
    v
}

#[test]
fn bind_sets_nonblocking_cloexec_reuseaddr_and_reports_the_real_port() {
    let l = Listener::bind(&ListenOptions::new("127.0.0.1:0".parse().unwrap())).unwrap();
    assert_ne!(l.local_addr().port(), 0);
    let fd = l.as_raw_fd();
    // SAFETY: fcntl queries on a live descriptor.
    let (fl, fdfl) = unsafe {
        (
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
        )
    };
    assert!(fl & libc::O_NONBLOCK != 0);
    assert!(fdfl & libc::FD_CLOEXEC != 0);
    assert_eq!(sockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR), 1);
    assert_eq!(sockopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN), 1);
    TcpStream::connect(l.local_addr()).unwrap();
}

#[test]
fn ipv6_ports_are_v6only() {
    let Ok(l) = Listener::bind(&ListenOptions::new("[::1]:0".parse().unwrap())) else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    assert_eq!(
        sockopt(l.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
        1
    );
    TcpStream::connect(l.local_addr()).unwrap();
}

#[test]
fn defer_accept_is_applied() {
    let mut o = ListenOptions::new("127.0.0.1:0".parse().unwrap());
    o.defer_accept_s = 5;
    let l = Listener::bind(&o).unwrap();
    assert!(sockopt(l.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT) > 0);
}

#[test]
fn unset_backlog_means_somaxconn() {
    assert!(somaxconn() > 0);
    // Out-of-range values fall back to somaxconn rather than failing.
    for backlog in [-1, 0, 70000] {
        let mut o = ListenOptions::new("127.0.0.1:0".parse().unwrap());
        o.backlog = backlog;
        Listener::bind(&o).unwrap();
    }
}

#[test]
fn a_taken_port_fails_with_the_address_and_errno() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = Listener::bind(&ListenOptions::new(taken.local_addr().unwrap())).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&taken.local_addr().unwrap().to_string()),
        "{msg}"
    );
    assert_eq!(err.source.raw_os_error(), Some(libc::EADDRINUSE), "{msg}");
}

#[test]
fn adopt_takes_an_inherited_listening_socket_and_refuses_others() {
    let std_l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = std_l.local_addr().unwrap();
    let l = Listener::adopt(OwnedFd::from(std_l)).unwrap();
    assert_eq!(l.local_addr(), addr);
    TcpStream::connect(addr).unwrap();

    let not_listening = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(Listener::adopt(OwnedFd::from(not_listening)).is_err());
}

#[test]
fn reuseport_siblings_share_the_port() {
    let mut o = ListenOptions::new("127.0.0.1:0".parse().unwrap());
    o.reuseport = true;
    let a = Listener::bind(&o).unwrap();
    let b = a.reuseport_sibling().unwrap();
    assert_eq!(a.local_addr(), b.local_addr());
    let plain = Listener::bind(&ListenOptions::new("127.0.0.1:0".parse().unwrap())).unwrap();
    assert!(plain.reuseport_sibling().is_err());
}
