//! Listening sockets: created and bound here, or adopted from an inherited descriptor.
//!
//! Everything here runs on the caller's thread: the thread that starts (or reloads) the
//! ports. Accepting threads only read a `Listener`'s descriptor.

use crate::sys::fd::{dup_cloexec, set_nonblocking_cloexec};
use crate::sys::socket::{
    self, attach_cbpf, bpf, getsockopt_int, setsockopt_int, tcp_socket, SO_ATTACH_FILTER,
    SO_ATTACH_REUSEPORT_CBPF, SO_DETACH_REUSEPORT_BPF,
};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// How to create a listening socket.
#[derive(Clone, Debug)]
pub struct ListenOptions {
    /// Address and port to bind; port 0 picks a free port.
    pub addr: SocketAddr,
    /// listen(2) backlog; outside 1..=65535 means /proc/sys/net/core/somaxconn, as Go does.
    pub backlog: i64,
    /// Set SO_REUSEPORT, so sibling sockets can share the port (one per event thread).
    pub reuseport: bool,
    /// TCP_DEFER_ACCEPT seconds; 0 = off.
    pub defer_accept_s: u32,
    /// SO_RCVBUF for the socket (inherited by accepted sockets); 0 = OS default.
    pub recv_buffer: usize,
    /// SO_SNDBUF likewise; 0 = OS default.
    pub send_buffer: usize,
}

impl ListenOptions {
    /// Options for `addr` with every other knob at its default.
    pub fn new(addr: SocketAddr) -> ListenOptions {
        ListenOptions {
            addr,
            backlog: -1,
            reuseport: false,
            defer_accept_s: 0,
            recv_buffer: 0,
            send_buffer: 0,
        }
    }
}

/// A failed socket operation on a listening address: says what, where, and the errno.
#[derive(Debug)]
pub struct ListenError {
    /// The operation: "socket", "bind", "listen", "setsockopt", "adopt".
    pub op: &'static str,
    /// The address (or, for an adopted fd, `fd=N` is in `op`'s message).
    pub addr: String,
    /// The OS error.
    pub source: io::Error,
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.addr, self.source)
    }
}

impl std::error::Error for ListenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A bound, listening, non-blocking, close-on-exec TCP socket. Closed exactly once, when
/// the last owner drops it.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    local: SocketAddr,
    options: ListenOptions,
}

/// The kernel's accept queue limit, as Go's net.Listen reads it (4096 if unreadable).
pub fn somaxconn() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|n: &i32| *n > 0)
        .unwrap_or(4096)
}

impl Listener {
    /// Creates, configures, binds and listens.
    pub fn bind(options: &ListenOptions) -> Result<Listener, ListenError> {
        let l = Listener::reserve(options)?;
        l.listen()?;
        Ok(l)
    }

    /// Creates, configures and binds, without listening: the port is taken (a conflict
    /// fails now) but connections are refused until [`Listener::listen`].
    pub fn reserve(options: &ListenOptions) -> Result<Listener, ListenError> {
        let addr = options.addr;
        let err = |op, source| ListenError {
            op,
            addr: addr.to_string(),
            source,
        };
        let fd = tcp_socket(&addr).map_err(|e| err("socket", e))?;
        let raw = fd.as_raw_fd();
        let set =
            |level, name, v| setsockopt_int(raw, level, name, v).map_err(|e| err("setsockopt", e));
        set(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        if options.reuseport {
            set(libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        }
        if addr.is_ipv6() {
            set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        }
        if options.recv_buffer > 0 {
            set(
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                clamp_int(options.recv_buffer),
            )?;
        }
        if options.send_buffer > 0 {
            set(
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                clamp_int(options.send_buffer),
            )?;
        }
        socket::bind(raw, &addr).map_err(|e| err("bind", e))?;
        if options.defer_accept_s > 0 {
            set(
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                clamp_int(options.defer_accept_s as usize),
            )?;
        }
        let local = socket::local_addr(raw).map_err(|e| err("getsockname", e))?;
        Ok(Listener {
            fd,
            local,
            options: options.clone(),
        })
    }

    /// Starts listening (again: a listening socket only takes the new backlog), with the
    /// configured backlog, or somaxconn when it is out of 1..=65535.
    pub fn listen(&self) -> Result<(), ListenError> {
        let backlog = if (1..=65535).contains(&self.options.backlog) {
            self.options.backlog as i32
        } else {
            somaxconn()
        };
        socket::listen(self.fd.as_raw_fd(), backlog).map_err(|source| ListenError {
            op: "listen",
            addr: self.local.to_string(),
            source,
        })
    }

    /// Adopts an inherited socket that is already listening (`fd=N` ports, systemd
    /// socket activation), making it non-blocking and close-on-exec.
    pub fn adopt(fd: OwnedFd) -> Result<Listener, ListenError> {
        let raw = fd.as_raw_fd();
        let err = |op, source| ListenError {
            op,
            addr: format!("fd={raw}"),
            source,
        };
        let listening = getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)
            .map_err(|e| err("adopt", e))?;
        if listening != 1 {
            return Err(err(
                "adopt",
                io::Error::new(io::ErrorKind::InvalidInput, "not a listening socket"),
            ));
        }
        set_nonblocking_cloexec(raw).map_err(|e| err("adopt", e))?;
        let local = socket::local_addr(raw).map_err(|e| err("getsockname", e))?;
        let reuseport = getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT).unwrap_or(0) == 1;
        let mut options = ListenOptions::new(local);
        options.reuseport = reuseport;
        Ok(Listener { fd, local, options })
    }

    /// Another socket listening on the same address through SO_REUSEPORT (this one must
    /// have been created with `reuseport`), for one listening socket per event thread.
    pub fn reuseport_sibling(&self) -> Result<Listener, ListenError> {
        if !self.options.reuseport {
            return Err(ListenError {
                op: "reuseport",
                addr: self.local.to_string(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "listener was not created with SO_REUSEPORT",
                ),
            });
        }
        let mut opts = self.options.clone();
        opts.addr = self.local;
        Listener::bind(&opts)
    }

    /// A second descriptor for the same listening socket (dup, close-on-exec). epoll
    /// tells registrations apart by descriptor, so two acceptors overlapping on one
    /// socket during a reload swap each register their own.
    pub fn try_clone(&self) -> Result<Listener, ListenError> {
        let fd = dup_cloexec(self.fd.as_raw_fd()).map_err(|source| ListenError {
            op: "dup",
            addr: self.local.to_string(),
            source,
        })?;
        Ok(Listener {
            fd,
            local: self.local,
            options: self.options.clone(),
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether the socket has SO_REUSEPORT (so [`Listener::reuseport_sibling`] works).
    pub fn reuseport(&self) -> bool {
        self.options.reuseport
    }

    /// Sets SO_REUSEPORT on a socket made without it (an adopted or inherited one, or one
    /// bound without it so that the bind fails if anyone holds the address), so siblings
    /// can join it. Linux accepts this after bind, and even after listen: then the first
    /// sibling that listens makes the reuseport group, this socket first.
    pub fn enable_reuseport(&mut self) -> Result<(), ListenError> {
        if self.options.reuseport {
            return Ok(());
        }
        setsockopt_int(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1).map_err(
            |source| ListenError {
                op: "setsockopt SO_REUSEPORT",
                addr: self.local.to_string(),
                source,
            },
        )?;
        self.options.reuseport = true;
        Ok(())
    }

    /// Steers the new connections of this socket's SO_REUSEPORT group to its first
    /// `keep` sockets (at random among them), so that the others can be drained and
    /// closed without resetting anything: a classic BPF selector returns the index of
    /// the socket that gets a connection, in the order the sockets started listening.
    /// Steering covers new connections only; what already waits in a socket's queue
    /// stays there, for its owner to accept.
    pub fn steer_reuseport(&self, keep: u32) -> io::Result<()> {
        let keep = keep.max(1);
        let program = [
            // A = random u32; A %= keep; return A.
            bpf(
                libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
                (libc::SKF_AD_OFF + libc::SKF_AD_RANDOM) as u32,
                0,
                0,
            ),
            bpf(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, keep, 0, 0),
            bpf(libc::BPF_RET | libc::BPF_A, 0, 0, 0),
        ];
        attach_cbpf(self.fd.as_raw_fd(), SO_ATTACH_REUSEPORT_CBPF, &program)
    }

    /// Undoes [`Listener::steer_reuseport`]: the group picks sockets by hash again.
    pub fn unsteer_reuseport(&self) -> io::Result<()> {
        match setsockopt_int(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_DETACH_REUSEPORT_BPF,
            0,
        ) {
            Ok(()) => Ok(()),
            // Nothing attached.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            // Before Linux 5.8: a selector that returns an index past the group's end
            // makes the kernel fall back to the hash.
            Err(_) => attach_cbpf(
                self.fd.as_raw_fd(),
                SO_ATTACH_REUSEPORT_CBPF,
                &[bpf(libc::BPF_RET | libc::BPF_K, u32::MAX, 0, 0)],
            ),
        }
    }

    /// Drops new connection requests (a SYN without ACK) addressed to this socket, while
    /// handshakes already under way complete into its queue: a port being removed can
    /// then be drained and closed without resetting what waits in it. A client whose SYN
    /// was dropped retries it, and finds the port closed (refused) by then.
    pub fn refuse_new_connections(&self) -> io::Result<()> {
        const FLAGS: u32 = 13; // byte offset of the TCP flags in the TCP header
        const SYN: u32 = 0x02;
        const SYN_ACK: u32 = 0x12;
        let program = [
            bpf(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, FLAGS, 0, 0),
            bpf(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, SYN_ACK, 0, 0),
            bpf(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, SYN, 0, 1),
            bpf(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
            bpf(libc::BPF_RET | libc::BPF_K, u32::MAX, 0, 0),
        ];
        attach_cbpf(self.fd.as_raw_fd(), SO_ATTACH_FILTER, &program)
    }
}

/// Whether the kernel migrates the queue of a closed SO_REUSEPORT socket to another one
/// of its group (`net.ipv4.tcp_migrate_req = 1`, Linux 5.14+): closing one then resets
/// nothing, and no draining is needed.
pub fn migrate_req_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|s| s.trim() == "1")
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn clamp_int(v: usize) -> libc::c_int {
    v.min(libc::c_int::MAX as usize) as libc::c_int
}

impl From<io::Error> for ListenError {
    fn from(source: io::Error) -> Self {
        ListenError {
            op: "accept",
            addr: String::new(),
            source,
        }
    }
}
