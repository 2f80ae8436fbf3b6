//! A request's parent (SPEC §10): after remap, the `[[parent]]` rule of its host picks
//! the parents it goes to instead of its origin ([`Session::parent_route`]), the first
//! picked when it is forwarded ([`Session::first_parent`]: a cache hit takes none); a parent
//! that refuses, resets or times out before a response byte hands the request to the
//! next one on the rule's order (the next on the ring for `consistent_hash`), up to
//! `total_connect_attempts`, then to the origin (`go_direct`) or a 502
//! ([`Session::parent_failover`]). Runs on the session's ET_NET thread; the parents'
//! health is shared through atomics (`http/parent`).

use super::super::parent::{no_parent, ParentRoute, ParentTable};
use super::super::remap::split_authority;
use super::Session;
use crate::error::Error;
use iocore::EThread;
use std::net::SocketAddr;

impl Session {
    /// Whether a request for `authority` (`host[:port]` of the remapped URL) falls under
    /// a parent rule whose `go_direct` is false: then it needs no origin address at all.
    pub(super) fn parent_only(table: &ParentTable, authority: &str) -> bool {
        Self::rule_goes_direct(table, authority) == Some(false)
    }

    /// Whether a parent rule covers a request for `authority`.
    pub(super) fn parent_covers(table: &ParentTable, authority: &str) -> bool {
        Self::rule_goes_direct(table, authority).is_some()
    }

    /// The `go_direct` of the parent rule for `authority`, if one covers it.
    fn rule_goes_direct(table: &ParentTable, authority: &str) -> Option<bool> {
        let (host, _) = split_authority(authority)?;
        table
            .rule_for(host.trim_start_matches('[').trim_end_matches(']'))
            .map(|r| r.rule.go_direct)
    }

    /// The way through the parents for a request for `authority` whose path and query
    /// is `path` (the ring's key, as nginx's `$request_uri`), when a rule covers it.
    /// `origin` is where going direct goes (`None`: it was not looked up). No parent is
    /// picked yet: the cache may still answer the request.
    pub(super) fn parent_route(
        table: &ParentTable,
        authority: &str,
        path: &str,
        origin: Option<SocketAddr>,
    ) -> Option<Box<ParentRoute>> {
        let (host, _) = split_authority(authority)?;
        let sel = table.rule_for(host.trim_start_matches('[').trim_end_matches(']'))?;
        let mut route = Box::new(table.route(sel, path.as_bytes()));
        route.origin = origin;
        Some(route)
    }

    /// The first parent of a request about to be forwarded: its address, or `None` to go
    /// to the origin (no parent can take it and the rule says `go_direct`); an error
    /// (502) when neither may be.
    pub(super) fn first_parent(
        &self,
        route: &mut ParentRoute,
    ) -> Result<Option<SocketAddr>, Error> {
        match route.next() {
            Some(addr) => Ok(Some(addr)),
            None if route.go_direct() && route.origin.is_some() => {
                self.shared.metrics.parent_direct.inc();
                Ok(None)
            }
            None => Err(no_parent()),
        }
    }

    /// The parent the transaction is on failed before a response byte (`err`): it is
    /// counted against the parent's health, and the request goes to the next parent, or
    /// its origin (`go_direct`), or ends with a 502. false: the transaction is not on a
    /// parent, or cannot be sent again (part of a request body went, or a response
    /// byte came): the caller fails it with `err`.
    pub(super) fn parent_failover(&mut self, t: &mut EThread, err: &Error) -> bool {
        let peer = self.peer();
        let connected = self.origin.as_ref().is_some_and(|o| o.connected);
        let answered = self.origin.as_ref().is_some_and(|o| !o.inbuf.is_empty());
        let Some(tx) = self.tx.as_mut() else {
            return false;
        };
        if tx.resp_body.is_some() || answered {
            return false;
        }
        let Some(route) = tx.parent.as_deref_mut() else {
            return false;
        };
        if !route.on_parent() {
            return false; // gone direct: the origin's failure is the answer
        }
        route.failed();
        log::debug!("{peer}: parent failed: {err}");
        // The request again: as first written if the connect never completed (nothing
        // of it went), else the copy a bodiless request keeps.
        let resend = if connected {
            tx.retry.clone()
        } else {
            Some(std::mem::take(&mut self.out_o))
        };
        let Some(req) = resend else {
            return false;
        };
        let next = match route.next() {
            Some(addr) => {
                self.shared.metrics.parent_failovers.inc();
                Some(addr)
            }
            None => match route.origin.filter(|_| route.go_direct()) {
                Some(origin) => {
                    self.shared.metrics.parent_direct.inc();
                    Some(origin)
                }
                None => None,
            },
        };
        let mut req = req;
        let on_parent = route.on_parent();
        if next.is_some() && !on_parent && route.parent_is_proxy() {
            origin_form(&mut req);
        }
        // A place under per_server.connection.max was the failed parent's; the next
        // one takes its own (`admit`, below), or waits for it.
        tx.slot = None;
        self.release_origin(t, false);
        let Some(addr) = next else {
            self.fail_tx(no_parent());
            return true;
        };
        self.out_o = req;
        self.log_target(addr, on_parent);
        let max = self.shared.with_live(|live| live.origin_max);
        self.admit(t, addr, max);
        true
    }
}

/// Rewrites the request line `METHOD http://authority/path HTTP/1.1` (or `https://`) of
/// a request written for a proxy into the origin form `METHOD /path HTTP/1.1`, for the
/// origin; `OPTIONS http://authority HTTP/1.1` into `OPTIONS * HTTP/1.1`.
fn origin_form(req: &mut Vec<u8>) {
    let Some(sp) = req.iter().position(|&b| b == b' ') else {
        return;
    };
    let target = &req[sp + 1..];
    let scheme = if target.starts_with(b"http://") {
        7
    } else if target.starts_with(b"https://") {
        8
    } else {
        return;
    };
    let Some(path) = target[scheme..]
        .iter()
        .position(|&b| b == b'/' || b == b' ')
    else {
        return;
    };
    let authority = sp + 1..sp + 1 + scheme + path;
    if target[scheme + path] == b'/' {
        req.drain(authority);
    } else {
        req.splice(authority, *b"*");
    }
}

#[cfg(test)]
mod tests {
    use super::origin_form;

    #[test]
    fn a_proxy_request_line_becomes_an_origin_one() {
        let mut r = b"GET http://a.example:8080/x?y HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        origin_form(&mut r);
        assert_eq!(r, b"GET /x?y HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut r = b"GET https://a.example/x HTTP/1.1\r\n\r\n".to_vec();
        origin_form(&mut r);
        assert_eq!(r, b"GET /x HTTP/1.1\r\n\r\n");
        let mut r = b"OPTIONS http://a.example:81 HTTP/1.1\r\n\r\n".to_vec();
        origin_form(&mut r);
        assert_eq!(r, b"OPTIONS * HTTP/1.1\r\n\r\n");
        let mut r = b"GET /already HTTP/1.1\r\n\r\n".to_vec();
        origin_form(&mut r);
        assert_eq!(r, b"GET /already HTTP/1.1\r\n\r\n");
    }
}
