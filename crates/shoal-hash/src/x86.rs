//! The two-lane SHA-NI kernel: the standard SHA-NI round sequence, written once for two
//! independent states so that each instruction of one lane can issue while the other
//! lane waits on its previous result.

use std::arch::x86_64::*;

/// Whether this CPU has the SHA extensions (and the SSE levels the kernel uses).
pub fn available() -> bool {
    is_x86_feature_detected!("sha")
        && is_x86_feature_detected!("sse2")
        && is_x86_feature_detected!("ssse3")
        && is_x86_feature_detected!("sse4.1")
}

/// `a` and `b` are equally long runs of whole 64-byte blocks.
pub fn compress_pair(state_a: &mut [u32; 5], a: &[u8], state_b: &mut [u32; 5], b: &[u8]) {
    assert!(a.len() == b.len() && a.len().is_multiple_of(64));
    assert!(available());
    // SAFETY: the CPU features the kernel is compiled for were just checked.
    unsafe { kernel(state_a, a, state_b, b) }
}

/// Four rounds on both lanes, with the message word already scheduled.
macro_rules! rounds4 {
    ($from:ident, $to:ident, $w:ident, $k:literal) => {
        for l in 0..2 {
            $to[l] = _mm_sha1rnds4_epu32($from[l], _mm_sha1nexte_epu32($to[l], $w[l]), $k);
        }
    };
}

/// Schedules the next message word from the previous four, then four rounds.
macro_rules! schedule_rounds4 {
    ($from:ident, $to:ident, $w0:ident, $w1:ident, $w2:ident, $w3:ident, $w4:ident, $k:literal) => {
        for l in 0..2 {
            $w4[l] = _mm_sha1msg2_epu32(
                _mm_xor_si128(_mm_sha1msg1_epu32($w0[l], $w1[l]), $w2[l]),
                $w3[l],
            );
        }
        rounds4!($from, $to, $w4, $k);
    };
}

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn kernel(state_a: &mut [u32; 5], a: &[u8], state_b: &mut [u32; 5], b: &[u8]) {
    // Big-endian words: reverse the bytes of each 16-byte load.
    let mask = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0A0B_0C0D_0E0F);
    let load_abcd =
        |s: &[u32; 5]| _mm_set_epi32(s[0] as i32, s[1] as i32, s[2] as i32, s[3] as i32);
    let mut abcd = [load_abcd(state_a), load_abcd(state_b)];
    let mut e = [
        _mm_set_epi32(state_a[4] as i32, 0, 0, 0),
        _mm_set_epi32(state_b[4] as i32, 0, 0, 0),
    ];
    for (block_a, block_b) in a.chunks_exact(64).zip(b.chunks_exact(64)) {
        let ptrs = [
            block_a.as_ptr().cast::<__m128i>(),
            block_b.as_ptr().cast::<__m128i>(),
        ];
        let zero = _mm_setzero_si128();
        let (mut w0, mut w1, mut w2, mut w3, mut w4) =
            ([zero; 2], [zero; 2], [zero; 2], [zero; 2], [zero; 2]);
        for l in 0..2 {
            // SAFETY: each block is 64 bytes; the loads are unaligned ones.
            unsafe {
                w0[l] = _mm_shuffle_epi8(_mm_loadu_si128(ptrs[l]), mask);
                w1[l] = _mm_shuffle_epi8(_mm_loadu_si128(ptrs[l].add(1)), mask);
                w2[l] = _mm_shuffle_epi8(_mm_loadu_si128(ptrs[l].add(2)), mask);
                w3[l] = _mm_shuffle_epi8(_mm_loadu_si128(ptrs[l].add(3)), mask);
            }
        }
        let mut h0 = abcd;
        let mut h1 = [_mm_add_epi32(e[0], w0[0]), _mm_add_epi32(e[1], w0[1])];

        // Rounds 0..20
        for l in 0..2 {
            h1[l] = _mm_sha1rnds4_epu32(h0[l], h1[l], 0);
        }
        rounds4!(h1, h0, w1, 0);
        rounds4!(h0, h1, w2, 0);
        rounds4!(h1, h0, w3, 0);
        schedule_rounds4!(h0, h1, w0, w1, w2, w3, w4, 0);
        // Rounds 20..40
        schedule_rounds4!(h1, h0, w1, w2, w3, w4, w0, 1);
        schedule_rounds4!(h0, h1, w2, w3, w4, w0, w1, 1);
        schedule_rounds4!(h1, h0, w3, w4, w0, w1, w2, 1);
        schedule_rounds4!(h0, h1, w4, w0, w1, w2, w3, 1);
        schedule_rounds4!(h1, h0, w0, w1, w2, w3, w4, 1);
        // Rounds 40..60
        schedule_rounds4!(h0, h1, w1, w2, w3, w4, w0, 2);
        schedule_rounds4!(h1, h0, w2, w3, w4, w0, w1, 2);
        schedule_rounds4!(h0, h1, w3, w4, w0, w1, w2, 2);
        schedule_rounds4!(h1, h0, w4, w0, w1, w2, w3, 2);
        schedule_rounds4!(h0, h1, w0, w1, w2, w3, w4, 2);
        // Rounds 60..80
        schedule_rounds4!(h1, h0, w1, w2, w3, w4, w0, 3);
        schedule_rounds4!(h0, h1, w2, w3, w4, w0, w1, 3);
        schedule_rounds4!(h1, h0, w3, w4, w0, w1, w2, 3);
        schedule_rounds4!(h0, h1, w4, w0, w1, w2, w3, 3);
        schedule_rounds4!(h1, h0, w0, w1, w2, w3, w4, 3);

        for l in 0..2 {
            abcd[l] = _mm_add_epi32(abcd[l], h0[l]);
            e[l] = _mm_sha1nexte_epu32(h1[l], e[l]);
        }
    }
    for (state, l) in [(state_a, 0), (state_b, 1)] {
        state[0] = _mm_extract_epi32(abcd[l], 3) as u32;
        state[1] = _mm_extract_epi32(abcd[l], 2) as u32;
        state[2] = _mm_extract_epi32(abcd[l], 1) as u32;
        state[3] = _mm_extract_epi32(abcd[l], 0) as u32;
        state[4] = _mm_extract_epi32(e[l], 3) as u32;
    }
}
