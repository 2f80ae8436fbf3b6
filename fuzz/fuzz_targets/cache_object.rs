//! A stored cache object read back from a span (bytes a crash or a bad disk may have
//! mangled, behind the span's checksum) never panics the reader, and what decodes
//! encodes back to itself. The first byte picks the request its `Vary` is matched with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnstile::http::caching::{alternate_key, Stored};
use turnstile::http::codec::parse_request;

const REQUESTS: [&[u8]; 3] = [
    b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\nAccept-Language: en\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\naccept-encoding: br, gzip\r\nAccept-Encoding: x\r\n\r\n",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let value: std::sync::Arc<[u8]> = bytes.into();
    let Some(obj) = Stored::decode(&value) else {
        return;
    };
    assert_eq!(Stored::decode(&obj.encode().into()).as_ref(), Some(&obj));
    assert_eq!(
        Stored::decode_variants(bytes),
        Some((obj.generation, obj.kept_variants(), obj.kept_tags()))
    );
    let raw = REQUESTS[pick as usize % REQUESTS.len()];
    let (req, _) = parse_request(raw, 1 << 16).unwrap().unwrap();
    // The request's own variant keys apart from every other: an alternate key names it
    // exactly, and `serves` agrees with it.
    match obj.request_variant(&req) {
        Some(own) => {
            assert_eq!(obj.serves(&req), own == obj.variant);
            let k = alternate_key("k", obj.generation, &own);
            let stored_at = obj.alternate_at("k");
            assert_eq!(stored_at.as_ref() == Some(&k), own == obj.variant);
        }
        None => assert!(obj.variant.is_empty() && obj.serves(&req) || !obj.serves(&req)),
    }
    // Joining its URL's variants keeps at most the limit, itself newest, and hands back
    // exactly the rest.
    let (mut joined, max) = (obj.clone(), usize::from(pick % 4));
    let before = obj.kept_variants();
    let dropped = joined.join(&before, &obj.kept_tags(), max);
    if obj.variant.is_empty() || max == 0 {
        assert!(dropped.is_empty() && joined.alternates.is_empty());
    } else {
        assert!(joined.alternates.len() <= max);
        assert_eq!(joined.alternates.last(), Some(&obj.variant));
        let mut all = dropped.clone();
        all.extend(joined.alternates.iter().cloned());
        assert!(all.iter().all(|v| before.contains(v) || *v == obj.variant));
        assert_eq!(Stored::decode(&joined.encode().into()).as_ref(), Some(&joined));
    }
    let now = u64::from(pick) << 20;
    let _ = obj.current_age(now);
    let _ = obj.validators();
    // Every head written from it ends where a head ends.
    let len = obj.body.len() as u64;
    let mut heads = vec![Vec::new(); 4];
    obj.write_hit(&mut heads[0], "1.1 fuzz", pick & 1 == 0, now);
    obj.write_not_modified(&mut heads[1], "1.1 fuzz", true, now);
    obj.write_unsatisfiable(&mut heads[2], "1.1 fuzz", true, now);
    if len > 0 {
        obj.write_partial(&mut heads[3], (len / 2, len), "1.1 fuzz", true, now);
    } else {
        heads[3].extend_from_slice(b"\r\n\r\n");
    }
    for h in &heads {
        assert!(h.ends_with(b"\r\n\r\n"));
    }
});
