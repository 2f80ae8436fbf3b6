//! CRC-32C (Castagnoli), the checksum of span headers and records.
//!
//! The `crc32c` crate computes it with the CPU's CRC32 instruction (SSE 4.2 on x86-64,
//! the CRC extension on AArch64) and falls back to tables elsewhere. The convention is
//! the standard one of iSCSI, ext4 and Btrfs, which span format 1 was written with:
//! reflected polynomial 0x82F63B78, initial value and final XOR `0xFFFF_FFFF`. CRC-32C
//! detects every burst error up to 32 bits, which covers a flipped byte or a torn sector.

/// A running CRC-32C. The state is the checksum of everything fed so far, which is what
/// `crc32c_append` continues from.
#[derive(Clone, Copy, Debug)]
pub(super) struct Crc32c(u32);

impl Crc32c {
    /// The CRC of nothing so far.
    pub(super) fn new() -> Crc32c {
        Crc32c(0)
    }

    /// Feeds `data`.
    pub(super) fn update(&mut self, data: &[u8]) {
        self.0 = crc32c::crc32c_append(self.0, data);
    }

    /// The checksum of everything fed.
    pub(super) fn finish(self) -> u32 {
        self.0
    }

    /// The checksum of the concatenation of `parts`.
    pub(super) fn of(parts: &[&[u8]]) -> u32 {
        let mut c = Crc32c::new();
        for p in parts {
            c.update(p);
        }
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Crc32c;

    /// The definition, one bit at a time: the oracle the fast paths are held to.
    fn bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// Bytes that are not a simple pattern, so a wrong table entry or lane shows.
    fn data(n: usize) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn matches_the_published_check_values() {
        assert_eq!(Crc32c::of(&[b"123456789"]), 0xE306_9283);
        assert_eq!(Crc32c::of(&[&[0u8; 32]]), 0x8A91_36AA);
        assert_eq!(Crc32c::of(&[&[0xffu8; 32]]), 0x62A8_AB43);
        assert_eq!(Crc32c::of(&[b""]), 0);
        assert_eq!(Crc32c::of(&[]), 0);
    }

    /// (offset, length, checksum) as the table-driven slicing-by-8 code that wrote span
    /// format 1 computed them, at lengths and alignments around the hardware path's
    /// 8-byte words and its interleaved blocks.
    #[test]
    fn matches_the_checksums_of_the_previous_implementation() {
        let d = data(70_000);
        for (off, len, want) in [
            (0, 1, 0x527D_5351),
            (0, 3, 0xD748_10C7),
            (1, 7, 0x59DA_D18F),
            (3, 8, 0xFA19_E275),
            (5, 9, 0xFD0C_7E05),
            (0, 15, 0x121B_DB67),
            (7, 16, 0xE089_B361),
            (0, 31, 0x3C0E_0956),
            (1, 33, 0x4B4A_813D),
            (0, 40, 0x55C5_52BC),
            (2, 64, 0x0C7A_C564),
            (0, 255, 0xD082_6670),
            (3, 512, 0x7338_387D),
            (1, 4096, 0x9AF7_A6E0),
            (0, 65_536, 0x9AC5_469F),
            (5, 65_541, 0xECDE_85FD),
            (0, 70_000, 0x3D8E_1587),
        ] {
            assert_eq!(
                Crc32c::of(&[&d[off..off + len]]),
                want,
                "offset {off}, {len} bytes"
            );
        }
        assert_eq!(Crc32c::of(&[b"Hello world!"]), 0x7B98_E751);
    }

    #[test]
    fn matches_the_bitwise_definition_at_every_short_length_and_alignment() {
        let d = data(600);
        for off in 0..8 {
            for len in 0..=(d.len() - 8) {
                let part = &d[off..off + len];
                assert_eq!(
                    Crc32c::of(&[part]),
                    bitwise(part),
                    "offset {off}, {len} bytes"
                );
            }
        }
    }

    #[test]
    fn split_input_gives_the_same_checksum() {
        let data = data(10_000);
        let whole = Crc32c::of(&[&data]);
        assert_eq!(whole, bitwise(&data));
        for cut in [0, 1, 7, 8, 9, 500, 999, 1000, 4096, 8191, 9999, 10_000] {
            assert_eq!(
                Crc32c::of(&[&data[..cut], &data[cut..]]),
                whole,
                "cut {cut}"
            );
        }
        let mut c = Crc32c::new();
        for chunk in data.chunks(37) {
            c.update(chunk);
        }
        assert_eq!(c.finish(), whole);
    }
}
