//! The parent ring (`consistent_hash`, nginx's `hash $request_uri consistent`) over
//! 1 M URLs: how evenly it spreads them (max / mean load), what share moves when one
//! parent leaves (against 1/N, and against `hash mod N`), where that share goes, how
//! closely weights are followed, and how long a ring takes to build and a URL to look
//! up. Deterministic: no clock in the figures but the two times.
//!
//! ```sh
//! cargo bench --bench ring            # add `-- --urls 100000` for a quicker run
//! ```

use std::time::Instant;
use turnstile::http::parent::ring::Ring;

fn urls(n: usize) -> Vec<String> {
    // Paths shaped like a CDN's: a hashed directory and a numbered object.
    (0..n as u64)
        .map(|i| {
            let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            format!("/assets/{h:06x}/obj-{i}.jpg?v={}", i % 7)
        })
        .collect()
}

fn parent_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.0.{}.{}:8080", i / 200, i % 200 + 1))
        .collect()
}

/// The parent a URL goes to when `gone` is down: the next one on the ring.
fn owner_without(ring: &Ring, key: &[u8], gone: usize) -> usize {
    let start = ring.point_of(key);
    (0..ring.len())
        .map(|i| ring.parent_at(start + i))
        .find(|&p| p != gone)
        .expect("another parent")
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let n_urls = argv
        .iter()
        .position(|a| a == "--urls")
        .and_then(|i| argv.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000usize);
    let urls = urls(n_urls);
    println!("# parent ring: {n_urls} URLs, 160 points per unit of weight (nginx's ring)");
    println!(
        "{:>3} {:>9} {:>10} {:>9} {:>9} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "N",
        "max/mean",
        "min/mean",
        "1/N",
        "moved",
        "moved_max",
        "spread_max",
        "mod_N_moved",
        "build_us",
        "lookup_ns"
    );
    for n in [3usize, 8, 32, 64] {
        let names = parent_names(n);
        let t0 = Instant::now();
        let ring = Ring::build(names.iter().map(|s| (s.as_str(), 1)));
        let build_us = t0.elapsed().as_secs_f64() * 1e6;
        let t0 = Instant::now();
        let owners: Vec<usize> = urls
            .iter()
            .map(|u| ring.parent_of(u.as_bytes()).unwrap())
            .collect();
        let lookup_ns = t0.elapsed().as_secs_f64() * 1e9 / urls.len() as f64;
        let mut load = vec![0usize; n];
        for &o in &owners {
            load[o] += 1;
        }
        let mean = urls.len() as f64 / n as f64;
        let max = *load.iter().max().unwrap() as f64 / mean;
        let min = *load.iter().min().unwrap() as f64 / mean;
        // Each parent leaving in turn (up to 8 of them): the share of URLs that moves,
        // checked by walking the ring (no URL of a parent still up may move), and the
        // largest part of it one remaining parent takes.
        let mut moved_sum = 0.0;
        let mut moved_max: f64 = 0.0;
        let mut spread_max: f64 = 0.0;
        let tries = n.min(8);
        for gone in 0..tries {
            let mut moved = 0usize;
            let mut to = vec![0usize; n];
            for (u, &o) in urls.iter().zip(&owners) {
                if o == gone {
                    let now = owner_without(&ring, u.as_bytes(), gone);
                    moved += 1;
                    to[now] += 1;
                }
            }
            let share = moved as f64 / urls.len() as f64;
            moved_sum += share;
            moved_max = moved_max.max(share);
            spread_max = spread_max.max(*to.iter().max().unwrap() as f64 / moved.max(1) as f64);
        }
        // hash mod N for comparison: the share whose parent changes when N becomes N-1.
        let mod_moved = urls
            .iter()
            .filter(|u| {
                let h = crc32fast::hash(u.as_bytes()) as usize;
                h % n != h % (n - 1)
            })
            .count() as f64
            / urls.len() as f64;
        println!(
            "{n:>3} {max:>9.3} {min:>10.3} {:>8.2}% {:>8.2}% {:>9.2}% {:>9.1}% {:>10.1}% {build_us:>9.0} {lookup_ns:>9.1}",
            100.0 / n as f64,
            100.0 * moved_sum / tries as f64,
            100.0 * moved_max,
            100.0 * spread_max,
            100.0 * mod_moved,
        );
    }
    // Denser rings (not nginx's): what max / mean the point count buys.
    for n in [8usize, 64] {
        let names = parent_names(n);
        let mut line = format!("# N = {n}, max/mean by points per parent:");
        for points in [160u32, 640, 2560] {
            let ring = Ring::build_with(names.iter().map(|s| (s.as_str(), 1)), points);
            let mut load = vec![0usize; n];
            for u in &urls {
                load[ring.parent_of(u.as_bytes()).unwrap()] += 1;
            }
            let mean = urls.len() as f64 / n as f64;
            line.push_str(&format!(
                " {points}: {:.3}",
                *load.iter().max().unwrap() as f64 / mean
            ));
        }
        println!("{line}");
    }
    // Weights: 8 parents weighted 1, 2, 3, 4, 1, 2, 3, 4.
    let names = parent_names(8);
    let weights = [1u32, 2, 3, 4, 1, 2, 3, 4];
    let ring = Ring::build(names.iter().map(String::as_str).zip(weights));
    let mut load = [0usize; 8];
    for u in &urls {
        load[ring.parent_of(u.as_bytes()).unwrap()] += 1;
    }
    let total_w: u32 = weights.iter().sum();
    let ratios: Vec<f64> = load
        .iter()
        .zip(weights)
        .map(|(&l, w)| (l as f64 / urls.len() as f64) / (w as f64 / total_w as f64))
        .collect();
    let fmt: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!(
        "# weights 1,2,3,4,1,2,3,4: observed share / weighted share = {} (min {:.3}, max {:.3})",
        fmt.join(" "),
        ratios.iter().cloned().fold(f64::MAX, f64::min),
        ratios.iter().cloned().fold(0.0, f64::max)
    );
}
