//! The consistent-hash ring of a `[[parent]]` rule with `round_robin =
//! "consistent_hash"`, point for point the one nginx builds for `hash KEY consistent`
//! (ngx_http_upstream_hash_module): 160 points per unit of a parent's weight, point `j`
//! of parent `"host:port"` at `crc32(host ‖ "\0" ‖ port ‖ le32(point j-1))` (point -1
//! being 0), points sorted by hash with duplicates dropped (the first kept), and a key at
//! the first point whose hash is ≥ `crc32(key)`, wrapping to the first point. So a fleet
//! of nginx and Turnstile children given the same parents in the same order sends every
//! URL to the same parent. Plain data, built once per (re)load off the event threads.

/// Points per unit of weight (nginx's, and ketama's).
pub const POINTS_PER_WEIGHT: u32 = 160;

/// A built ring.
#[derive(Debug)]
pub struct Ring {
    /// `(hash, parent index)`, sorted by hash, hashes distinct.
    points: Box<[(u32, u16)]>,
}

/// The parts of an nginx `server` name that its point hashes cover: the host (as
/// written, brackets and all) and the port digits after the last `:`.
fn host_and_port(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, port),
        _ => (name, ""),
    }
}

impl Ring {
    /// The ring of `parents`, each `(name as "host:port", weight)`, in rule order (the
    /// order decides which of two equal hashes stays, as in nginx).
    pub fn build<'a>(parents: impl IntoIterator<Item = (&'a str, u32)>) -> Ring {
        Ring::build_with(parents, POINTS_PER_WEIGHT)
    }

    /// As [`Ring::build`] with `per_weight` points per unit of weight instead of
    /// nginx's 160: a denser ring spreads load more evenly but no longer agrees with
    /// nginx's (for `benches/ring.rs`).
    pub fn build_with<'a>(
        parents: impl IntoIterator<Item = (&'a str, u32)>,
        per_weight: u32,
    ) -> Ring {
        let mut points = Vec::new();
        for (index, (name, weight)) in parents.into_iter().enumerate() {
            let (host, port) = host_and_port(name);
            let mut base = crc32fast::Hasher::new();
            base.update(host.as_bytes());
            base.update(b"\0");
            base.update(port.as_bytes());
            let mut prev: u32 = 0;
            for _ in 0..weight.saturating_mul(per_weight) {
                let mut h = base.clone();
                h.update(&prev.to_le_bytes());
                let hash = h.finalize();
                points.push((hash, index as u16));
                prev = hash;
            }
        }
        // A stable sort: of equal hashes, the earlier parent's point stays.
        points.sort_by_key(|p| p.0);
        points.dedup_by_key(|p| p.0);
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// Points on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// A ring without points (a rule without parents, which the configuration refuses).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The point a key lands on: the first whose hash is ≥ the key's CRC-32, wrapping.
    /// 0 for an empty ring.
    pub fn point_of(&self, key: &[u8]) -> usize {
        let hash = crc32fast::hash(key);
        let i = self.points.partition_point(|p| p.0 < hash);
        if i == self.points.len() {
            0
        } else {
            i
        }
    }

    /// The parent (its index in the rule) owning point `i` (taken modulo the ring).
    pub fn parent_at(&self, i: usize) -> usize {
        usize::from(self.points[i % self.points.len()].1)
    }

    /// The parent a key belongs to while every parent is up.
    pub fn parent_of(&self, key: &[u8]) -> Option<usize> {
        (!self.points.is_empty()).then(|| self.parent_at(self.point_of(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unit_of_weight_adds_160_points() {
        let r = Ring::build([("10.0.0.1:80", 1), ("10.0.0.2:80", 3)]);
        assert_eq!(r.len(), 4 * 160);
        assert_eq!(Ring::build(std::iter::empty()).parent_of(b"/x"), None);
    }

    #[test]
    fn every_url_goes_where_nginx_sends_it() {
        let eq = Ring::build([
            ("127.0.0.1:18081", 1),
            ("127.0.0.1:18082", 1),
            ("127.0.0.1:18083", 1),
        ]);
        let wt = Ring::build([
            ("127.0.0.1:18081", 1),
            ("127.0.0.1:18082", 2),
            ("127.0.0.1:18083", 3),
        ]);
        let names = ["127.0.0.1:18081", "127.0.0.1:18082", "127.0.0.1:18083"];
        let mut checked = 0;
        for line in include_str!("nginx_vectors.txt").lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut f = line.split(' ');
            let (ring, url, want) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            let ring = if ring == "eq" { &eq } else { &wt };
            let got = names[ring.parent_of(url.as_bytes()).unwrap()];
            assert_eq!(got, want, "{url}");
            checked += 1;
        }
        assert_eq!(checked, 600);
    }

    #[test]
    fn the_ring_is_pingora_ketamas_for_ip_parents() {
        use pingora_ketama::{Bucket, Continuum};
        let addrs: Vec<(String, u32)> = (1..=8)
            .map(|i| (format!("10.1.0.{i}:3128"), i % 3 + 1))
            .collect();
        let ours = Ring::build(addrs.iter().map(|(a, w)| (a.as_str(), *w)));
        let buckets: Vec<Bucket> = addrs
            .iter()
            .map(|(a, w)| Bucket::new(a.parse().unwrap(), *w))
            .collect();
        let theirs = Continuum::new(&buckets);
        for i in 0..5000 {
            let key = format!("/k/{i}");
            let got = &addrs[ours.parent_of(key.as_bytes()).unwrap()].0;
            assert_eq!(
                got.parse::<std::net::SocketAddr>().ok(),
                theirs.node(key.as_bytes()),
                "{key}"
            );
        }
    }

    #[test]
    fn the_port_is_split_off_as_nginx_does() {
        assert_eq!(host_and_port("a.example:8080"), ("a.example", "8080"));
        assert_eq!(host_and_port("[::1]:3128"), ("[::1]", "3128"));
        assert_eq!(host_and_port("unix"), ("unix", ""));
    }
}
