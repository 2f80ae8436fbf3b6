//! EMFILE: a port out of descriptors pauses, counts, burns no CPU, and resumes.
//!
//! This file holds one test on purpose: it lowers RLIMIT_NOFILE for its whole process.

mod util;

use iocore::{AcceptMode, AcceptOptions, EThread, NetConnection, NetTuning};
use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use util::{listener, wait_until, Rig};

fn cpu_time() -> Duration {
    // SAFETY: rusage is plain old data and getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live rusage struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Opens descriptors until the process limit is reached.
fn exhaust_fds() -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    loop {
        // SAFETY: plain syscall; on success we own the returned descriptor.
        let fd = unsafe { libc::dup(0) };
        if fd < 0 {
            return fds;
        }
        // SAFETY: `fd` was just created by dup and is owned by nobody else.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

#[test]
fn emfile_pauses_the_port_without_spinning_and_resumes_when_fds_free() {
    // SAFETY: rlimit is plain old data.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a live rlimit struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let highest_fd = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64 + 64;
    let low = libc::rlimit {
        rlim_cur: (highest_fd + 256).min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `low` is a valid rlimit no higher than the hard limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);

    for mode in [
        AcceptMode::Threads {
            count: 1,
            avoid_event_cores: false,
        },
        AcceptMode::Event {
            listener_per_thread: false,
        },
        AcceptMode::Periodic,
    ] {
        let rig = Rig::new(
            2,
            NetTuning {
                throttle_delay: Duration::from_millis(50),
                ..Default::default()
            },
        );
        let l = listener();
        let got = Arc::new(AtomicUsize::new(0));
        let g = got.clone();
        let action = rig
            .net
            .main_accept(
                Arc::new(move |_c: NetConnection, _t: &mut EThread| {
                    g.fetch_add(1, Ordering::SeqCst);
                }),
                l.clone(),
                &AcceptOptions::new("emfile", mode.clone()),
            )
            .unwrap();

        // Client sockets first (connect needs no new descriptor), then no fd is left.
        let sockets: Vec<socket2_lite::Sock> = (0..3).map(|_| socket2_lite::Sock::new()).collect();
        let filler = exhaust_fds();
        for s in &sockets {
            s.connect(l.local_addr());
        }
        assert!(
            wait_until(Duration::from_secs(5), || rig
                .metric("proxy.process.net.accept_errors")
                >= 1),
            "{mode:?}: no EMFILE counted"
        );
        let during_pause = got.load(Ordering::SeqCst);
        let cpu0 = cpu_time();
        std::thread::sleep(Duration::from_millis(500));
        let burnt = cpu_time() - cpu0;
        // A spinning acceptor burns ~500 ms here; one retry per 50 ms pause costs ~µs.
        assert!(
            burnt < Duration::from_millis(100),
            "{mode:?}: {burnt:?} CPU during the pause"
        );
        // It retries after each pause (on a loaded machine the second may come late).
        assert!(
            wait_until(Duration::from_secs(5), || rig
                .metric("proxy.process.net.accept_pauses")
                >= 2),
            "{mode:?}: the port did not retry"
        );
        assert!(
            during_pause < 3,
            "{mode:?}: every connection was accepted with no descriptor free"
        );

        drop(filler);
        assert!(
            wait_until(Duration::from_secs(5), || got.load(Ordering::SeqCst) == 3),
            "{mode:?}: did not resume"
        );
        action.cancel();
        assert!(action.wait_done(Duration::from_secs(1)));
        drop(sockets);
        drop(TcpStream::connect(l.local_addr()).ok());
    }
}

/// A client socket created before the fd table fills, connected afterwards.
mod socket2_lite {
    use std::net::SocketAddr;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub struct Sock(OwnedFd);

    impl Sock {
        pub fn new() -> Sock {
            // SAFETY: plain syscall; on success we own the returned descriptor.
            let fd =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
            assert!(fd >= 0);
            // SAFETY: `fd` was just created and is owned by nobody else.
            Sock(unsafe { OwnedFd::from_raw_fd(fd) })
        }

        pub fn connect(&self, addr: SocketAddr) {
            let SocketAddr::V4(a) = addr else {
                panic!("v4 only")
            };
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sin` is a valid sockaddr_in of the given length.
            let r = unsafe {
                libc::connect(
                    self.0.as_raw_fd(),
                    (&sin as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        }
    }
}
