use proptest::prelude::*;
use sha1::Digest;

use super::*;

fn reference(data: &[u8]) -> [u8; 20] {
    sha1::Sha1::digest(data).into()
}

#[test]
fn known_answers() {
    assert_eq!(
        Sha1::digest(b""),
        *b"\xda\x39\xa3\xee\x5e\x6b\x4b\x0d\x32\x55\xbf\xef\x95\x60\x18\x90\xaf\xd8\x07\x09"
    );
    assert_eq!(
        Sha1::digest(b"abc"),
        *b"\xa9\x99\x3e\x36\x47\x06\x81\x6a\xba\x3e\x25\x71\x78\x50\xc2\x6c\x9c\xd0\xd8\x9d"
    );
    // Every length around the padding boundaries.
    let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    for len in 0..data.len() {
        assert_eq!(Sha1::digest(&data[..len]), reference(&data[..len]), "{len}");
    }
}

#[test]
fn a_large_pair_matches() {
    let a: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..1_048_576u32).map(|i| (i % 241) as u8).collect();
    let (mut ha, mut hb) = (Sha1::new(), Sha1::new());
    for (ca, cb) in a.chunks(262_144).zip(b.chunks(262_144)) {
        update_pair(&mut ha, ca, &mut hb, cb);
    }
    assert_eq!(ha.finalize(), reference(&a));
    assert_eq!(hb.finalize(), reference(&b));
}

proptest! {
    #[test]
    fn pairs_in_any_pieces_match_the_reference(
        a in proptest::collection::vec(any::<u8>(), 0..2000),
        b in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec((0usize..700, 0usize..700), 0..6),
    ) {
        let (mut ha, mut hb) = (Sha1::new(), Sha1::new());
        let (mut ra, mut rb) = (&a[..], &b[..]);
        for (ca, cb) in cuts {
            let (ca, cb) = (ca.min(ra.len()), cb.min(rb.len()));
            update_pair(&mut ha, &ra[..ca], &mut hb, &rb[..cb]);
            ra = &ra[ca..];
            rb = &rb[cb..];
        }
        ha.update(ra);
        update_pair(&mut hb, rb, &mut Sha1::new(), b"");
        prop_assert_eq!(ha.finalize(), reference(&a));
        prop_assert_eq!(hb.finalize(), reference(&b));
    }
}
