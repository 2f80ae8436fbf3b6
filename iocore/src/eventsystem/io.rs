//! I/O registration on one event thread: what a handler asks epoll for ([`Interest`]),
//! what epoll reports ([`Ready`]), the [`Token`] that names a registration, the
//! [`Verdict`] a handler returns, and the table that owns the thread's epoll set and maps
//! tokens to handlers.
//!
//! The table belongs to one `EThread` and all of its methods run on that thread. It is
//! generic over the handler type, so this file needs nothing from `ethread.rs` (whose
//! `IoHandler` takes `&mut EThread`).

use crate::sys::epoll::{self, Epoll, Events};
use std::io;
use std::os::fd::RawFd;

/// Readiness a handler asks epoll for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest(u32);

impl Interest {
    /// Readable, including the peer's half-close.
    pub const READ: Interest = Interest(epoll::IN | epoll::RDHUP);
    /// Readable, nothing else: for listening sockets, the only read interest
    /// EPOLLEXCLUSIVE accepts.
    pub const ACCEPT: Interest = Interest(epoll::IN);
    /// Writable.
    pub const WRITE: Interest = Interest(epoll::OUT);
    /// Edge-triggered: reported once per change, the handler must drain to EAGAIN.
    pub const EDGE: Interest = Interest(epoll::ET);
    /// EPOLLEXCLUSIVE: of the threads waiting on one fd, wake only one (or a few).
    pub const EXCLUSIVE: Interest = Interest(epoll::EXCLUSIVE);
}

impl std::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

/// What epoll reported for a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready(u32);

impl Ready {
    /// Readable (or at EOF).
    pub fn is_readable(self) -> bool {
        self.0 & epoll::IN != 0
    }
    /// Writable.
    pub fn is_writable(self) -> bool {
        self.0 & epoll::OUT != 0
    }
    /// The peer closed its side (or both sides are closed).
    pub fn is_hup(self) -> bool {
        self.0 & (epoll::RDHUP | epoll::HUP) != 0
    }
    /// An error is pending on the socket.
    pub fn is_error(self) -> bool {
        self.0 & epoll::ERR != 0
    }
}

/// Names one I/O registration on one thread; stale tokens never reach a new handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(u64);

impl Token {
    /// The epoll data of the thread's waker eventfd. No slot gets it: that would take
    /// 2^32 - 1 slots and a generation that high on the last one.
    const WAKER: Token = Token(u64::MAX);

    fn new(index: u32, generation: u32) -> Token {
        Token(((generation as u64) << 32) | index as u64)
    }
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// What an I/O handler wants after handling readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Stay registered.
    Keep,
    /// Deregister and drop the handler (closing whatever descriptors it owns).
    Remove,
}

/// One event of a wait, decoded.
pub(crate) enum Reported {
    /// The thread's waker eventfd: another thread has work for it.
    Waker,
    /// Readiness of a registration (possibly stale by the time it is handled).
    Io(Token, Ready),
}

/// Adds the thread's waker eventfd to its epoll set, before the thread starts.
pub(crate) fn watch_waker(epoll: &Epoll, waker: RawFd) -> io::Result<()> {
    epoll.add(waker, epoll::IN, Token::WAKER.0)
}

/// The events of the last [`IoTable::wait`].
#[inline]
pub(crate) fn reported(events: &Events) -> impl Iterator<Item = Reported> + '_ {
    events.iter().map(|(data, bits)| {
        if data == Token::WAKER.0 {
            Reported::Waker
        } else {
            Reported::Io(Token(data), Ready(bits))
        }
    })
}

struct Slot<H: ?Sized> {
    generation: u32,
    live: bool,
    fd: RawFd,
    handler: Option<Box<H>>,
    /// Set by `replace` while the current handler runs; installed when it returns.
    replacement: Option<Box<H>>,
    /// Registered with `sole`: closing the descriptor removes it from epoll.
    sole: bool,
}

impl<H: ?Sized> Slot<H> {
    /// Whether it holds `token`'s registration: live, and not reused since.
    fn holds(&self, token: Token) -> bool {
        self.live && self.generation == token.generation()
    }
}

/// One thread's epoll set and the handlers of its registrations, indexed by token.
pub(crate) struct IoTable<H: ?Sized> {
    epoll: Epoll,
    slots: Vec<Slot<H>>,
    free: Vec<u32>,
}

impl<H: ?Sized> IoTable<H> {
    /// An empty table over `epoll` (which may already hold the waker).
    pub(crate) fn new(epoll: Epoll) -> IoTable<H> {
        IoTable {
            epoll,
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Waits for readiness (see [`Epoll::wait`]); [`reported`] decodes what came.
    pub(crate) fn wait(&self, events: &mut Events, timeout_ms: i32) -> io::Result<()> {
        self.epoll.wait(events, timeout_ms)
    }

    /// Adds `fd` to epoll with `handler`. With `sole`, the handler holds the descriptor's
    /// only copy and closes it when dropped, so removal can skip EPOLL_CTL_DEL.
    pub(crate) fn register(
        &mut self,
        fd: RawFd,
        interest: Interest,
        handler: Box<H>,
        sole: bool,
    ) -> io::Result<Token> {
        let idx = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    live: false,
                    fd: -1,
                    handler: None,
                    replacement: None,
                    sole: false,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[idx];
        let token = Token::new(idx as u32, slot.generation);
        if let Err(e) = self.epoll.add(fd, interest.0, token.0) {
            self.free.push(idx as u32);
            return Err(e);
        }
        slot.live = true;
        slot.fd = fd;
        slot.handler = Some(handler);
        slot.sole = sole;
        Ok(token)
    }

    /// Whether `token` names a live registration (not removed since it was made).
    pub(crate) fn is_live(&self, token: Token) -> bool {
        self.slots
            .get(token.index())
            .is_some_and(|s| s.holds(token))
    }

    fn live_slot(&mut self, token: Token) -> Option<&mut Slot<H>> {
        self.slots.get_mut(token.index()).filter(|s| s.holds(token))
    }

    /// Takes a registration's handler out to run it; None when the token is stale
    /// (deregistered earlier in this batch). Give it back with [`IoTable::restore`].
    pub(crate) fn lend(&mut self, token: Token) -> Option<Box<H>> {
        self.live_slot(token)?.handler.take()
    }

    /// Puts back a handler taken with [`IoTable::lend`] after it ran, or drops it: when
    /// it deregistered itself meanwhile, when it handed its registration to a replacement,
    /// or when it returned [`Verdict::Remove`] (which also removes the registration).
    pub(crate) fn restore(&mut self, token: Token, handler: Box<H>, verdict: Verdict) {
        let Some(slot) = self.live_slot(token) else {
            return; // it deregistered itself while running
        };
        if let Some(next) = slot.replacement.take() {
            // It gave its registration away while it ran.
            slot.handler = Some(next);
            return;
        }
        match verdict {
            Verdict::Keep => slot.handler = Some(handler),
            // The registration goes first, while the handler still holds the descriptor
            // open; the handler (and the descriptor) is dropped on return.
            Verdict::Remove => self.release(token),
        }
    }

    /// Hands a live registration to `handler`: at once, or, when the current handler is
    /// running, once it returns. False (and `handler` dropped) when the token is stale.
    pub(crate) fn replace(&mut self, token: Token, handler: Box<H>) -> bool {
        match self.live_slot(token) {
            Some(s) => {
                if s.handler.is_some() {
                    s.handler = Some(handler);
                } else {
                    s.replacement = Some(handler);
                }
                true
            }
            None => false,
        }
    }

    /// Removes a registration and returns its handler (None if the token is stale, or if
    /// the handler is running now: [`IoTable::restore`] then drops it).
    pub(crate) fn deregister(&mut self, token: Token) -> Option<Box<H>> {
        let handler = self.live_slot(token)?.handler.take();
        self.release(token);
        handler
    }

    fn release(&mut self, token: Token) {
        let slot = &mut self.slots[token.index()];
        // The fd is still open here (its owner is the handler, not yet dropped). A sole
        // descriptor leaves epoll when it is closed. A failure means it is not registered
        // any more, which is what this wants.
        if !slot.sole {
            let _ = self.epoll.delete(slot.fd);
        }
        slot.live = false;
        slot.fd = -1;
        slot.replacement = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(token.index() as u32);
    }

    /// Drops every handler (closing what they own), for the thread's shutdown. The epoll
    /// set goes with the table.
    pub(crate) fn clear(&mut self) {
        for slot in &mut self.slots {
            if slot.live {
                slot.live = false;
                slot.handler = None;
            }
        }
    }
}
