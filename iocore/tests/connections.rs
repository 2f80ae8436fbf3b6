//! `connections_currently_open` is exact whatever path closes a connection.

mod util;

use iocore::{
    AcceptMode, AcceptOptions, EThread, Interest, NetConnection, NetTuning, Ready, ThrottleMode,
    Token, Verdict,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use util::{listener, wait_until, Rig};

/// Serves by the first byte the client sends: `d` the handler drops the connection at
/// once (no byte read), `p` waits for the peer to close, `l` answers and closes locally,
/// `h` is held by the test until released.
struct ByPath {
    conn: Option<NetConnection>,
    held: Arc<Mutex<Vec<NetConnection>>>,
    waiting_for_peer: bool,
}

impl iocore::IoHandler for ByPath {
    fn ready(&mut self, _t: &mut EThread, _tok: Token, _r: Ready) -> Verdict {
        let conn = self.conn.as_ref().expect("live");
        let mut b = [0u8; 1];
        match conn.recv(&mut b) {
            Ok(0) => Verdict::Remove, // peer closed
            Ok(_) if self.waiting_for_peer => Verdict::Keep,
            Ok(_) => match b[0] {
                b'p' => {
                    self.waiting_for_peer = true;
                    Verdict::Keep
                }
                b'l' => {
                    let _ = conn.send(b"k");
                    Verdict::Remove // local close
                }
                b'h' => {
                    let _ = conn.send(b"k");
                    self.held.lock().unwrap().push(self.conn.take().unwrap());
                    Verdict::Remove
                }
                _ => Verdict::Remove,
            },
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Verdict::Keep,
            Err(_) => Verdict::Remove,
        }
    }
}

#[test]
fn ten_thousand_connections_closed_by_every_path_leave_zero_open() {
    const PER_CLIENT: usize = 2500;
    const CAP: u64 = 64;
    let rig = Rig::new(
        2,
        NetTuning {
            connections_throttle: CAP,
            throttle_mode: ThrottleMode::Close,
            ..Default::default()
        },
    );
    let l = listener();
    let held: Arc<Mutex<Vec<NetConnection>>> = Arc::default();
    let dropped = Arc::new(AtomicUsize::new(0));
    let (h, d) = (held.clone(), dropped.clone());
    let acceptor = move |conn: NetConnection, t: &mut EThread| {
        // Every 7th connection the handler drops without reading.
        if conn.peer_addr().port().is_multiple_of(7) {
            d.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let fd = conn.as_raw_fd();
        let conn_port = conn.peer_addr().port();
        let handler = ByPath {
            conn: Some(conn),
            held: h.clone(),
            waiting_for_peer: false,
        };
        // Half the sockets are registered as sole descriptors (no EPOLL_CTL_DEL on
        // removal): the count must stay exact either way.
        let _ = if conn_port.is_multiple_of(2) {
            t.register(fd, Interest::READ, Box::new(handler))
        } else {
            t.register_sole(fd, Interest::READ, Box::new(handler))
        };
    };
    let mut actions = Vec::new();
    for (label, mode) in util::all_modes()
        .into_iter()
        .filter(|(n, _)| *n != "event-reuseport")
    {
        actions.push(
            rig.net
                .main_accept(
                    Arc::new(acceptor.clone()),
                    l.clone(),
                    &AcceptOptions::new(label, mode),
                )
                .unwrap(),
        );
    }

    // Phase 1: fill the table to the cap with held connections (a client the acceptor
    // dropped gets no answer and tries again), then 100 more are accepted and closed at
    // once (table full).
    let mut holders = Vec::new();
    while (holders.len() as u64) < CAP {
        let mut s = TcpStream::connect(l.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if s.peer_addr().is_ok() && s.write_all(b"h").is_ok() {
            let mut k = [0u8; 1];
            if s.read_exact(&mut k).is_ok() {
                holders.push(s);
            }
        }
    }
    assert!(wait_until(
        Duration::from_secs(5),
        || held.lock().unwrap().len() as u64 == CAP
    ));
    let before = rig.metric("proxy.process.net.connections_throttled_in");
    for _ in 0..100 {
        let mut s = TcpStream::connect(l.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        let _ = s.read(&mut b); // EOF or reset: closed by the daemon
    }
    assert_eq!(
        rig.metric("proxy.process.net.connections_throttled_in") - before,
        100
    );
    held.lock().unwrap().clear();
    drop(holders);
    assert!(wait_until(Duration::from_secs(5), || rig
        .metric("proxy.process.net.connections_currently_open")
        == 0));

    // Phase 2: 10,000 connections from 4 clients, cycling through the close paths.
    let addr = l.local_addr();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            std::thread::spawn(move || {
                for i in 0..PER_CLIENT {
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        continue;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut b = [0u8; 1];
                    match (c + i) % 3 {
                        0 => {
                            let _ = s.write_all(b"p"); // then we close: peer close
                        }
                        1 => {
                            let _ = s.write_all(b"l");
                            let _ = s.read(&mut b); // the daemon closes
                        }
                        _ => {
                            // Connect and close without a word.
                        }
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(10), || rig
            .metric("proxy.process.net.connections_currently_open")
            == 0),
        "{} still open",
        rig.metric("proxy.process.net.connections_currently_open")
    );
    assert!(rig.metric("proxy.process.tcp.total_accepts") >= 10_000);
    assert!(dropped.load(Ordering::Relaxed) > 0);
    for a in &actions {
        a.cancel();
        assert!(a.wait_done(Duration::from_secs(1)));
    }
    assert_eq!(rig.metric("proxy.process.net.accepts_currently_open"), 0);
}

#[test]
fn shutting_down_the_event_threads_closes_what_they_hold() {
    let rig = Rig::new(2, NetTuning::default());
    let l = listener();
    let acceptor = |conn: NetConnection, t: &mut EThread| {
        let fd = conn.as_raw_fd();
        let keep = move |_t: &mut EThread, _tok: Token, _r: Ready| {
            let _own = &conn;
            Verdict::Keep
        };
        let _ = t.register(fd, Interest::READ, Box::new(keep));
    };
    let action = rig
        .net
        .main_accept(
            Arc::new(acceptor),
            l.clone(),
            &AcceptOptions::new(
                "sd",
                AcceptMode::Threads {
                    count: 1,
                    avoid_event_cores: false,
                },
            ),
        )
        .unwrap();
    let clients: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(l.local_addr()).unwrap())
        .collect();
    assert!(wait_until(Duration::from_secs(5), || rig
        .metric("proxy.process.net.connections_currently_open")
        == 20));
    action.cancel();
    rig.events.shutdown();
    assert_eq!(
        rig.metric("proxy.process.net.connections_currently_open"),
        0
    );
    drop(clients);
}
