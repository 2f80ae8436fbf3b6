//! Tests of the stored object, variants and dates; each part's own rules are tested
//! beside it.

use super::*;
use crate::http::codec::test_util::{head as req, resp};

/// Kept fresh for `lifetime` s, nothing else.
fn kept(lifetime: u64) -> Storable {
    Storable {
        lifetime,
        ..Storable::default()
    }
}

fn encoded(o: &Stored) -> std::sync::Arc<[u8]> {
    o.encode().into()
}

#[test]
fn http_dates_parse() {
    assert_eq!(
        parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(
        parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(
        parse_http_date(b"Sun Nov  6 08:49:37 1994"),
        Some(784_111_777)
    );
    assert_eq!(
        parse_http_date(b" Sun, 06 Nov 1994 08:49:37 GMT "),
        Some(784_111_777)
    );
    assert_eq!(
        parse_http_date(b"Tuesday, 01-Jan-30 00:00:00 GMT"),
        Some(1_893_456_000),
        "a two-digit year below 70 is in this century"
    );
}

#[test]
fn malformed_http_dates_are_refused() {
    for bad in [
        &b""[..],
        b"0",
        b"-1",
        b"Sun, 06 Nov 1994 08:49:37",
        b"Sun, 06 Nov 1994 08:49:37 UTC",
        b"Sun, 06 Nov 1994 24:00:00 GMT",
        b"Sun, 31 Nov 1994 08:49:37 GMT",
        b"Mon, 06 Nov 1994 08:49:37 GMT",
        b"Wed, 31 Dec 1969 23:59:59 GMT",
        b"Sun, 06 Nov 1994 08:49:37 GMT\xff",
    ] {
        assert_eq!(
            parse_http_date(bad),
            None,
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn stored_objects_round_trip_and_older_versions_still_read() {
    let r = resp("HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n");
    let s = Stored::new(&r, b"hello".to_vec(), &kept(10), 1000, Vec::new());
    let d = Stored::decode(&encoded(&s)).unwrap();
    assert_eq!(d, s);
    // The versions before: stored time and the end of freshness, then the head, ...
    let v4 = |o: &Stored, magic: &[u8; 4], variant: bool, generation: bool, list: bool| {
        let mut v = magic.to_vec();
        v.extend_from_slice(&o.response_time.to_le_bytes());
        v.extend_from_slice(&(o.response_time + o.lifetime).to_le_bytes());
        v.extend_from_slice(&(o.head.len() as u32).to_le_bytes());
        if variant {
            v.extend_from_slice(&(o.variant.len() as u32).to_le_bytes());
        }
        if generation {
            v.extend_from_slice(&o.generation.to_le_bytes());
        }
        if list {
            v.extend_from_slice(&(o.alternates.len() as u32).to_le_bytes());
        }
        v.extend_from_slice(&o.head);
        v.extend_from_slice(&o.variant);
        if list {
            for a in &o.alternates {
                v.extend_from_slice(&(a.len() as u32).to_le_bytes());
                v.extend_from_slice(a);
            }
        }
        v.extend_from_slice(&o.body);
        std::sync::Arc::<[u8]>::from(v)
    };
    assert_eq!(
        Stored::decode(&v4(&s, b"TSC1", false, false, false)).unwrap(),
        s
    );
    let mut g = Stored::new(&r, b"hi".to_vec(), &kept(10), 1000, b"a:b\n".to_vec());
    g.generation = 77;
    g.alternates = vec![b"a:c\n".to_vec(), Vec::new(), b"a:b\n".to_vec()];
    g.alternate_tags = vec![b"\"c\"".to_vec(), Vec::new(), Vec::new()];
    assert_eq!(Stored::decode(&encoded(&g)).unwrap(), g);
    // TSC4 kept no entity tags.
    let mut g4 = g.clone();
    g4.alternate_tags.clear();
    assert_eq!(
        Stored::decode(&v4(&g4, b"TSC4", true, true, true)).unwrap(),
        g4
    );
    let mut g3 = g4.clone();
    g3.alternates.clear();
    assert_eq!(
        Stored::decode(&v4(&g3, b"TSC3", true, true, false)).unwrap(),
        g3
    );
    g3.generation = 0;
    assert_eq!(
        Stored::decode(&v4(&g3, b"TSC2", true, false, false)).unwrap(),
        g3
    );
    // A cut anywhere before the body is no object.
    let e = g.encode();
    let body_at = e.len() - g.body.len();
    for cut in 0..body_at {
        assert!(
            Stored::decode(&std::sync::Arc::from(&e[..cut])).is_none(),
            "cut at {cut}"
        );
    }
    assert!(d.is_fresh(1009) && !d.is_fresh(1010));
    assert_eq!(d.field("content-length"), Some(&b"5"[..]));
    assert!(d.field("transfer-encoding").is_none());
    assert_eq!(
        d.validators(),
        vec![("If-None-Match".to_string(), b"\"v1\"".to_vec())]
    );
    let mut out = Vec::new();
    d.write_hit(&mut out, "1.1 t", true, 1003);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("Age: 3\r\n") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
    assert_eq!(&*d.body, b"hello");
    assert!(Stored::decode(&std::sync::Arc::from(&b"junk"[..])).is_none());
}

#[test]
fn a_varying_object_serves_only_requests_with_the_same_values() {
    let r = resp(
        "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\
         Vary: Accept-Encoding,  accept-language\r\n\r\n",
    );
    let gzip_en =
        req("GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\nAccept-Language: en\r\n\r\n");
    let v = variant(&r, &gzip_en).unwrap();
    assert_eq!(v, b"accept-encoding:gzip\naccept-language:en\n");
    let s = Stored::decode(&encoded(&Stored::new(&r, b"x".to_vec(), &kept(60), 0, v))).unwrap();
    assert!(s.serves(&gzip_en));
    // Same values, other spelling of the names, other fields: served.
    assert!(s.serves(&req(
        "GET / HTTP/1.1\r\nhost: h\r\naccept-language:  en \r\nX: 1\r\nACCEPT-ENCODING: gzip\r\n\r\n"
    )));
    // Another value, or one missing: not served.
    assert!(!s.serves(&req(
        "GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br\r\nAccept-Language: en\r\n\r\n"
    )));
    assert!(!s.serves(&req(
        "GET / HTTP/1.1\r\nHost: h\r\nAccept-Language: en\r\n\r\n"
    )));
    // Without `Vary`, every request; with `Vary: *`, nothing is stored.
    let plain = resp("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n");
    assert_eq!(variant(&plain, &gzip_en), Some(Vec::new()));
    let star = resp("HTTP/1.1 200 OK\r\nVary: Accept, *\r\n\r\n");
    assert_eq!(variant(&star, &gzip_en), None);
}

#[test]
fn each_variant_has_a_key_of_its_own() {
    let en = alternate_key("k", 7, b"accept-language:en\n");
    assert_eq!(en, "k\n7\naccept-language:en\n");
    assert_ne!(en, alternate_key("k", 7, b"accept-language:fr\n"));
    assert_ne!(en, alternate_key("k2", 7, b"accept-language:en\n"));
    assert_ne!(en, alternate_key("k", 8, b"accept-language:en\n"));
    // Bytes that are no printable ASCII, and the escape itself, are escaped.
    assert_eq!(alternate_key("k", 1, b"a:\xff%\t"), "k\n1\na:%FF%25%09");
    assert_ne!(
        alternate_key("k", 1, b"a:%FF"),
        alternate_key("k", 1, b"a:\xff")
    );
    let (a, b) = (new_generation(), new_generation());
    assert!(b > a && a > 0);
}

#[test]
fn a_variant_joins_the_list_with_its_entity_tag_and_the_oldest_go_beyond_max() {
    let r = resp("HTTP/1.1 200 OK\r\nVary: A\r\nETag: \"c\"\r\n\r\n");
    let v = |x: &str| format!("a:{x}\n").into_bytes();
    let t = |x: &str| format!("\"{x}\"").into_bytes();
    let mut o = Stored::new(&r, Vec::new(), &kept(10), 0, v("c"));
    // Old objects know only themselves.
    assert_eq!(o.kept_variants(), vec![v("c")]);
    assert_eq!(o.kept_tags(), vec![t("c")]);
    assert!(o.join(&[v("a"), v("b")], &[t("a"), t("b")], 3).is_empty());
    assert_eq!(o.alternates, [v("a"), v("b"), v("c")]);
    assert_eq!(o.alternate_tags, [t("a"), t("b"), t("c")]);
    // Stored again, it becomes the newest, not a second entry; a tag not known is empty.
    assert!(o
        .join(&[v("c"), v("a"), v("b")], &[t("c"), t("a")], 3)
        .is_empty());
    assert_eq!(o.alternates, [v("a"), v("b"), v("c")]);
    assert_eq!(o.alternate_tags, [t("a"), Vec::new(), t("c")]);
    // Beyond max, the oldest go, oldest first.
    let tags = [t("a"), t("b"), t("d")];
    assert_eq!(
        o.join(&[v("a"), v("b"), v("d")], &tags, 2),
        [v("a"), v("b")]
    );
    assert_eq!(o.alternates, [v("d"), v("c")]);
    assert_eq!(o.kept_tags(), [t("d"), t("c")]);
    // The tags round-trip; a list of old objects (without tags) reads as empty ones.
    let back = Stored::decode(&encoded(&o)).unwrap();
    assert_eq!(back, o);
    assert_eq!(
        Stored::decode_variants(&o.encode()),
        Some((o.generation, o.kept_variants(), o.kept_tags()))
    );
    // 0: no limit, and no list; a response without Vary has none either.
    assert!(o.join(&[v("a"), v("b"), v("d")], &tags, 0).is_empty());
    assert!(o.alternates.is_empty() && o.alternate_tags.is_empty());
    assert_eq!(o.kept_variants(), vec![v("c")]);
    let mut plain = Stored::new(&r, Vec::new(), &kept(10), 0, Vec::new());
    assert!(plain.join(&[v("a")], &[t("a")], 1).is_empty());
    assert!(plain.alternates.is_empty() && plain.kept_variants().is_empty());
}

#[test]
fn a_variant_whose_head_no_longer_parses_serves_nobody() {
    // Found by the cache_object fuzz target: a stored variant with a mangled head (behind
    // its record's checksum, only a bug could make one) answered every request.
    let r = resp("HTTP/1.1 200 OK\r\nVary: A\r\n\r\n");
    let mut o = Stored::new(&r, b"x".to_vec(), &kept(10), 0, b"a:1\n".to_vec());
    assert!(o.serves(&req("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n")));
    o.head = b"junk".to_vec();
    assert!(!o.serves(&req("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n")));
    let decoded = Stored::decode(&encoded(&o)).unwrap();
    assert!(!decoded.serves(&req("GET / HTTP/1.1\r\nHost: h\r\n\r\n")));
}

#[test]
fn a_stored_head_keeps_no_hop_by_hop_connection_named_recomputed_or_stripped_field() {
    // `Via` is kept as it came: the hops before this one (RFC 9110 §7.6.3).
    let r = resp(
        "HTTP/1.1 200 OK\r\nConnection: X-Hop, cache-control\r\nX-Hop: 1\r\n\
         Cache-Control: max-age=60\r\nKeep-Alive: timeout=5\r\nAge: 7\r\nVia: 1.1 up\r\n\
         X-Strip: s\r\nContent-Length: 5\r\nETag: \"v1\"\r\nX-Kept: k\r\n\r\n",
    );
    let s = Storable {
        lifetime: 10,
        strip: vec!["x-strip".into()],
        ..Storable::default()
    };
    let mut o = Stored::new(&r, b"hello".to_vec(), &s, 1000, Vec::new());
    assert_eq!(
        String::from_utf8_lossy(&o.head),
        "HTTP/1.1 200 OK\r\nVia: 1.1 up\r\nETag: \"v1\"\r\nX-Kept: k\r\n\
         Date: Thu, 01 Jan 1970 00:16:40 GMT\r\nContent-Length: 5\r\n\r\n"
    );
    // A 304's fields replace the stored ones of the same names (its Via too: the path
    // it came by), none of the others.
    let update = resp(
        "HTTP/1.1 304 Not Modified\r\nConnection: x-new-hop\r\nX-New-Hop: 1\r\n\
         ETag: \"v2\"\r\nVia: 1.1 up2\r\nAge: 1\r\nX-Strip: t\r\nX-Added: a\r\n\r\n",
    );
    o.refresh(&update, &s, 1005);
    assert_eq!(
        String::from_utf8_lossy(&o.head),
        "HTTP/1.1 200 OK\r\nX-Kept: k\r\nDate: Thu, 01 Jan 1970 00:16:40 GMT\r\n\
         ETag: \"v2\"\r\nVia: 1.1 up2\r\nX-Added: a\r\nContent-Length: 5\r\n\r\n"
    );
    // A response with a Date keeps its own; a 204 has no Content-Length.
    let r = resp("HTTP/1.1 204 No Content\r\nDate: Sun, 09 Sep 2001 01:46:40 GMT\r\n\r\n");
    let o = Stored::new(&r, Vec::new(), &s, 1000, Vec::new());
    assert_eq!(
        String::from_utf8_lossy(&o.head),
        "HTTP/1.1 204 No Content\r\nDate: Sun, 09 Sep 2001 01:46:40 GMT\r\n\r\n"
    );
}

#[test]
fn keys_normalize_percent_encodings_as_rfc_3986_makes_them_equal() {
    let k = |path| super::key(false, "o", path);
    assert_eq!(k("/a%7eb%2fc?x=%3a"), "http://o/a~b%2Fc?x=%3A");
    assert_eq!(k("/%41%5a%30%2D%2e%5F"), "http://o/AZ0-._");
    // Not an encoding: kept as it is.
    assert_eq!(k("/50%"), "http://o/50%");
    assert_eq!(k("/%zz%4"), "http://o/%zz%4");
    assert_eq!(k("/%%41"), "http://o/%A");
    assert_eq!(k("/é%c3%a9"), "http://o/é%C3%A9");
}

#[test]
fn rfc9110_6_6_1_a_416_made_from_the_cache_is_dated() {
    let r = resp("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n");
    let s = Stored::new(&r, b"0123456789".to_vec(), &kept(60), 1000, Vec::new());
    let mut out = Vec::new();
    s.write_unsatisfiable(&mut out, "1.1 t", false, 784_111_777);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 416 "), "{text}");
    assert!(
        text.contains("\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nContent-Range: bytes */10\r\n"), "{text}");
}

#[test]
fn rfc9111_3_2_an_update_changes_neither_content_length_nor_content_range() {
    let r = resp("HTTP/1.1 200 OK\r\nETag: \"v\"\r\nX-Meta: old\r\n\r\n");
    let mut o = Stored::new(&r, b"0123456789".to_vec(), &kept(0), 1000, Vec::new());
    let update = resp(
        "HTTP/1.1 304 Not Modified\r\nETag: \"v\"\r\nContent-Range: bytes 0-3/10\r\n\
         Content-Length: 4\r\nX-Meta: new\r\n\r\n",
    );
    o.refresh(&update, &kept(60), 1005);
    assert_eq!(o.field("x-meta"), Some(&b"new"[..]));
    assert_eq!(o.field("content-length"), Some(&b"10"[..]));
    assert_eq!(o.field("content-range"), None);
    // So a range of it carries the one Content-Range the 206 writes.
    let mut out = Vec::new();
    o.write_partial(&mut out, (5, 10), "1.1 t", true, 1005);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("Content-Range").count(), 1, "{text}");
    assert!(text.contains("Content-Range: bytes 5-9/10\r\n"), "{text}");
}

#[test]
fn rfc9111_4_3_5_a_head_updates_only_a_stored_get_with_its_validators_and_length() {
    let lm = "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
    let stored = |fields: &str| {
        let r = resp(&format!("HTTP/1.1 200 OK\r\n{fields}\r\n"));
        Stored::new(&r, b"12345678".to_vec(), &kept(0), 1000, Vec::new())
    };
    let head = |fields: &str| resp(&format!("HTTP/1.1 200 OK\r\n{fields}\r\n"));
    let tagged = stored(&format!("ETag: \"e1\"\r\n{lm}"));
    assert!(tagged.same_as_head(&head(&format!("ETag: \"e1\"\r\n{lm}Content-Length: 8\r\n"))));
    assert!(tagged.same_as_head(&head("ETag: \"e1\"\r\n")));
    // Another tag, however equal the date; no tag against ours; another length.
    assert!(!tagged.same_as_head(&head(&format!("ETag: \"e2\"\r\n{lm}"))));
    assert!(!tagged.same_as_head(&head(lm)));
    assert!(!tagged.same_as_head(&head("ETag: \"e1\"\r\nContent-Length: 9\r\n")));
    // Without tags the date decides; without any validator nothing does.
    let dated = stored(lm);
    assert!(dated.same_as_head(&head(lm)));
    assert!(!dated.same_as_head(&head("Last-Modified: Mon, 07 Nov 1994 08:49:37 GMT\r\n")));
    assert!(!dated.same_as_head(&head(&format!("ETag: \"e1\"\r\n{lm}"))));
    assert!(!stored("").same_as_head(&head("Content-Length: 8\r\n")));
}

#[test]
fn rfc9111_4_1_a_304_that_changes_vary_updates_nothing() {
    let r = resp("HTTP/1.1 200 OK\r\nETag: \"v\"\r\nVary: Accept-Encoding, X-A\r\n\r\n");
    let o = Stored::new(&r, b"x".to_vec(), &kept(0), 1000, b"x".to_vec());
    let not_modified = |fields: &str| resp(&format!("HTTP/1.1 304 Not Modified\r\n{fields}\r\n"));
    // Without Vary (the stored one stays), or the same names however spelled: selected.
    assert!(o.selected_by(&not_modified("ETag: \"v\"\r\n")));
    assert!(o.selected_by(&not_modified(
        "ETag: \"v\"\r\nVary: accept-encoding\r\nVary: x-a\r\n"
    )));
    // Names added, dropped, reordered, or `*`: not.
    for vary in [
        "Accept-Encoding, X-A, X-B",
        "X-A",
        "X-A, Accept-Encoding",
        "*",
    ] {
        let update = not_modified(&format!("ETag: \"v\"\r\nVary: {vary}\r\n"));
        assert!(!o.selected_by(&update), "{vary}");
    }
    // An object without Vary given one by a 304 is not selected either.
    let plain = Stored::new(
        &resp("HTTP/1.1 200 OK\r\nETag: \"v\"\r\n\r\n"),
        Vec::new(),
        &kept(0),
        1000,
        Vec::new(),
    );
    assert!(!plain.selected_by(&not_modified("ETag: \"v\"\r\nVary: X-A\r\n")));
    assert!(!plain.selected_by(&not_modified("ETag: \"w\"\r\n")));
}
