//! Message stream encryption (MSE, also called protocol encryption or PE): the obfuscated
//! handshake that libtorrent, Transmission and others use, sans-IO like the rest of this
//! crate.
//!
//! Both sides agree on a secret `S` by Diffie-Hellman over a fixed 768-bit prime, then
//! prove they mean the same torrent by its info-hash (`SKEY`) without sending it in the
//! clear, and pick RC4 or plaintext for what follows. It hides the protocol from simple
//! traffic shaping; it is not authentication. Each side sends random padding so that
//! message lengths give nothing away, which is why both sides *search* for a marker
//! within a bounded window instead of reading fixed offsets.
//!
//! [`MseHandshake`] takes the bytes read from the socket ([`MseHandshake::feed`]) and
//! gives the bytes to write ([`MseHandshake::take_output`]) until it is
//! [`Established`]: then the connection's ciphers, if RC4 was chosen, and any bytes that
//! came after the handshake, already decrypted (for a responder, the peer's BitTorrent
//! handshake among them).

use num_bigint::BigUint;
use rc4::{KeyInit, Rc4, StreamCipher};
use shoal_hash::Sha1;
use thiserror::Error;

/// The 768-bit MSE prime; the generator is 2.
const PRIME_HEX: &[u8] = b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";
/// Public keys and the shared secret travel as 96 big-endian bytes, zero-padded on the left.
const KEY_LEN: usize = 96;
/// Random padding is at most this long.
pub const MAX_PAD: usize = 512;
/// The initial payload (the BitTorrent handshake) is at most this long.
const MAX_IA: usize = 68;
/// RC4's first keystream bytes are weak; both sides throw this many away.
const DISCARD: usize = 1024;
/// Padding we send: up to this many random bytes (the protocol allows 512; a little is
/// enough to vary the lengths and costs less on every connection).
const OUR_PAD: usize = 64;

/// What a side offers or picks for the stream after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoSet(u32);

impl CryptoSet {
    pub const PLAINTEXT: CryptoSet = CryptoSet(0x01);
    pub const RC4: CryptoSet = CryptoSet(0x02);
    pub const BOTH: CryptoSet = CryptoSet(0x03);

    fn contains(self, other: CryptoSet) -> bool {
        self.0 & other.0 == other.0
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MseError {
    #[error("encryption handshake: the peer's public key is out of range")]
    BadKey,
    #[error("encryption handshake: the peer answered with a plain BitTorrent handshake")]
    PlainReply,
    #[error("encryption handshake: no synchronisation marker within the padding allowed")]
    NoSync,
    #[error("encryption handshake: the peer is not asking for our torrent")]
    UnknownTorrent,
    #[error("encryption handshake: bad verification constant")]
    BadVerification,
    #[error("encryption handshake: padding of {0} bytes (at most 512)")]
    PadTooLong(usize),
    #[error("encryption handshake: initial payload of {0} bytes (at most 68)")]
    PayloadTooLong(usize),
    #[error("encryption handshake: no method both sides accept (offered {offered:#x})")]
    NoCommonMethod { offered: u32 },
    #[error("encryption handshake: the peer chose {0:#x}, which we did not offer")]
    BadSelection(u32),
}

/// One direction's RC4 keystream, continuous over the whole connection. Boxed: RC4's
/// state is 258 bytes, and ciphers travel in messages between tasks.
pub struct Cipher(Box<Rc4>);

impl Cipher {
    fn new(label: &[u8], secret: &[u8; KEY_LEN], skey: &[u8; 20]) -> Self {
        let mut hash = Sha1::new();
        hash.update(label);
        hash.update(secret);
        hash.update(skey);
        let mut rc4 = Rc4::new_from_slice(&hash.finalize()).expect("RC4 takes a 20-byte key");
        rc4.apply_keystream(&mut [0u8; DISCARD]);
        Cipher(Box::new(rc4))
    }

    /// Encrypts or decrypts `data` in place (RC4 is its own inverse).
    pub fn apply(&mut self, data: &mut [u8]) {
        self.0.apply_keystream(data);
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(RC4)")
    }
}

/// A finished handshake.
#[derive(Debug)]
pub struct Established {
    /// For what we send and what we receive, if RC4 was chosen; `None` for plaintext.
    pub ciphers: Option<(Cipher, Cipher)>,
    /// Bytes that followed the handshake, decrypted.
    pub payload: Vec<u8>,
    /// The torrent the handshake named (the SKEY): the BitTorrent handshake inside must
    /// name the same one.
    pub info_hash: [u8; 20],
}

enum State {
    /// Initiator: waiting for the responder's public key.
    AwaitKey,
    /// Initiator: looking for the responder's encrypted verification constant.
    AwaitVc {
        pattern: [u8; 8],
    },
    /// Initiator: reading the responder's choice and padding length.
    AwaitSelect,
    /// Initiator: skipping the responder's padding.
    AwaitPadD {
        pad: usize,
    },
    /// Responder: waiting for the initiator's public key.
    AwaitInitiatorKey,
    /// Responder: looking for `HASH('req1', S)`.
    AwaitReq1,
    /// Responder: reading the verification constant, offer and padding length.
    AwaitOffer,
    /// Responder: skipping the initiator's padding, then reading the payload's length.
    AwaitPadC {
        offered: CryptoSet,
        pad: usize,
    },
    /// Responder: reading the initial payload.
    AwaitIa {
        offered: CryptoSet,
        len: usize,
    },
    Done,
}

/// One side of an MSE handshake. See the module documentation.
pub struct MseHandshake {
    state: State,
    private: BigUint,
    secret: Option<[u8; KEY_LEN]>,
    skey: [u8; 20],
    /// Responder: the other torrents a peer may name (a hybrid torrent's v2 swarm, a
    /// session's other torrents); the one it names becomes `skey`.
    other_skeys: Vec<[u8; 20]>,
    /// Initiator: what we offer; responder: what we accept.
    methods: CryptoSet,
    encrypt: Option<Cipher>,
    decrypt: Option<Cipher>,
    /// Bytes received and not yet consumed (never decrypted yet).
    input: Vec<u8>,
    output: Vec<u8>,
    selected: Option<CryptoSet>,
    /// Responder: the initial payload (always RC4-encrypted on the wire), decrypted.
    ia: Vec<u8>,
}

fn prime() -> BigUint {
    BigUint::parse_bytes(PRIME_HEX, 16).expect("the MSE prime parses")
}

fn to_key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    out[KEY_LEN - bytes.len()..].copy_from_slice(&bytes);
    out
}

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for part in parts {
        h.update(part);
    }
    h.finalize()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl MseHandshake {
    fn new(state: State, skey: [u8; 20], methods: CryptoSet, rng: &mut impl rand::Rng) -> Self {
        // A key starting with 19 reads as a plain handshake's first byte to a peer that
        // looks at no more (Transmission does, and hangs up when it requires encryption),
        // so one handshake in 256 would fail: draw another.
        let (private, public) = loop {
            let private = BigUint::from_bytes_be(&rng.gen::<[u8; 20]>());
            let public = to_key_bytes(&BigUint::from(2u32).modpow(&private, &prime()));
            if usize::from(public[0]) != crate::PROTOCOL.len() {
                break (private, public);
            }
        };
        let mut output = public.to_vec();
        let pad = rng.gen_range(0..=OUR_PAD);
        output.extend((0..pad).map(|_| rng.gen::<u8>()));
        MseHandshake {
            state,
            private,
            secret: None,
            skey,
            other_skeys: Vec::new(),
            methods,
            encrypt: None,
            decrypt: None,
            input: Vec::new(),
            output,
            selected: None,
            ia: Vec::new(),
        }
    }

    /// We dial: `info_hash` is the torrent we want; `offer` what we accept after the
    /// handshake.
    pub fn initiator(info_hash: [u8; 20], offer: CryptoSet, rng: &mut impl rand::Rng) -> Self {
        Self::new(State::AwaitKey, info_hash, offer, rng)
    }

    /// A peer dialled us with a stream that is not a plain BitTorrent handshake: we serve
    /// `info_hash` and accept `accept` after the handshake (plaintext if both sides take
    /// it).
    pub fn responder(info_hash: [u8; 20], accept: CryptoSet, rng: &mut impl rand::Rng) -> Self {
        Self::new(State::AwaitInitiatorKey, info_hash, accept, rng)
    }

    /// As responder, also serves `info_hash`: a hybrid torrent is one swarm under its v1
    /// info-hash and another under its truncated v2 one (BEP 52), and a session on one
    /// port serves all its torrents; a peer may name any of them.
    pub fn also_serving(mut self, info_hash: [u8; 20]) -> Self {
        self.other_skeys.push(info_hash);
        self
    }

    /// The torrent the peer named (a responder's, once it did) or we named (an
    /// initiator's).
    pub fn info_hash(&self) -> [u8; 20] {
        self.skey
    }

    /// Bytes received and kept, not yet consumed (bounded by the handshake's windows).
    pub(crate) fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Bytes to send now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Bytes read from the peer. Returns the finished handshake once it is complete (and
    /// nothing after that).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Established>, MseError> {
        self.input.extend_from_slice(bytes);
        loop {
            let progressed = match self.state {
                State::AwaitKey | State::AwaitInitiatorKey => self.read_key()?,
                State::AwaitVc { pattern } => self.find_vc(pattern)?,
                State::AwaitSelect => self.read_select()?,
                State::AwaitPadD { pad } => self.skip_pad_d(pad),
                State::AwaitReq1 => self.find_req1()?,
                State::AwaitOffer => self.read_offer()?,
                State::AwaitPadC { offered, pad } => self.skip_pad_c(offered, pad)?,
                State::AwaitIa { offered, len } => self.read_ia(offered, len)?,
                State::Done => return Ok(None),
            };
            if matches!(self.state, State::Done) {
                return Ok(Some(self.finish()));
            }
            if !progressed {
                return Ok(None);
            }
        }
    }

    fn read_key(&mut self) -> Result<bool, MseError> {
        // A peer without MSE that took our key for a handshake and answered with its own
        // will not speak MSE: say so at once (the caller dials again in plaintext)
        // rather than wait for 96 bytes it may never send.
        let plain = [&[19u8][..], &crate::PROTOCOL[..]].concat();
        let seen = self.input.len().min(plain.len());
        if matches!(self.state, State::AwaitKey) && seen > 0 && self.input[..seen] == plain[..seen]
        {
            if seen == plain.len() {
                return Err(MseError::PlainReply);
            }
            return Ok(false);
        }
        if self.input.len() < KEY_LEN {
            return Ok(false);
        }
        let p = prime();
        let theirs = BigUint::from_bytes_be(&self.input[..KEY_LEN]);
        if theirs < BigUint::from(2u32) || theirs > &p - 2u32 {
            return Err(MseError::BadKey);
        }
        self.input.drain(..KEY_LEN);
        let secret = to_key_bytes(&theirs.modpow(&self.private, &p));
        self.secret = Some(secret);
        let skey = self.skey;
        if matches!(self.state, State::AwaitKey) {
            // Initiator: prove the secret and name the torrent, then make our offer.
            self.output.extend_from_slice(&hash(&[b"req1", &secret]));
            let req2 = hash(&[b"req2", &skey]);
            let req3 = hash(&[b"req3", &secret]);
            self.output
                .extend(req2.iter().zip(&req3).map(|(a, b)| a ^ b));
            let mut encrypt = Cipher::new(b"keyA", &secret, &skey);
            let mut offer = [0u8; 8 + 4 + 2 + 2];
            offer[8..12].copy_from_slice(&self.methods.0.to_be_bytes());
            encrypt.apply(&mut offer);
            self.output.extend_from_slice(&offer);
            self.encrypt = Some(encrypt);
            let mut decrypt = Cipher::new(b"keyB", &secret, &skey);
            let mut pattern = [0u8; 8];
            decrypt.apply(&mut pattern);
            self.decrypt = Some(decrypt);
            self.state = State::AwaitVc { pattern };
        } else {
            self.state = State::AwaitReq1;
        }
        Ok(true)
    }

    fn find_vc(&mut self, pattern: [u8; 8]) -> Result<bool, MseError> {
        let window = self.input.len().min(MAX_PAD + pattern.len());
        match find(&self.input[..window], &pattern) {
            Some(at) => {
                self.input.drain(..at + pattern.len());
                self.state = State::AwaitSelect;
                Ok(true)
            }
            None if self.input.len() >= MAX_PAD + pattern.len() => Err(MseError::NoSync),
            None => Ok(false),
        }
    }

    /// Decrypts and removes the first `n` bytes of the input, if there are that many.
    fn take_decrypted(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.input.len() < n {
            return None;
        }
        let mut bytes: Vec<u8> = self.input.drain(..n).collect();
        self.decrypt
            .as_mut()
            .expect("keys are set")
            .apply(&mut bytes);
        Some(bytes)
    }

    /// The two-byte length at `at` in `bytes`.
    fn length_at(bytes: &[u8], at: usize) -> usize {
        usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]))
    }

    fn read_select(&mut self) -> Result<bool, MseError> {
        let Some(head) = self.take_decrypted(6) else {
            return Ok(false);
        };
        let select = u32::from_be_bytes(head[..4].try_into().expect("four bytes"));
        let single = select == CryptoSet::PLAINTEXT.0 || select == CryptoSet::RC4.0;
        if !single || !self.methods.contains(CryptoSet(select)) {
            return Err(MseError::BadSelection(select));
        }
        let pad = Self::length_at(&head, 4);
        if pad > MAX_PAD {
            return Err(MseError::PadTooLong(pad));
        }
        self.selected = Some(CryptoSet(select));
        self.state = State::AwaitPadD { pad };
        Ok(true)
    }

    fn skip_pad_d(&mut self, pad: usize) -> bool {
        if self.take_decrypted(pad).is_none() {
            return false;
        }
        self.state = State::Done;
        true
    }

    fn find_req1(&mut self) -> Result<bool, MseError> {
        let secret = self.secret.expect("set with the key");
        let req1 = hash(&[b"req1", &secret]);
        let window = self.input.len().min(MAX_PAD + req1.len());
        let Some(at) = find(&self.input[..window], &req1) else {
            if self.input.len() >= MAX_PAD + req1.len() {
                return Err(MseError::NoSync);
            }
            return Ok(false);
        };
        if self.input.len() < at + 40 {
            return Ok(false);
        }
        let req3 = hash(&[b"req3", &secret]);
        let named: Vec<u8> = self.input[at + 20..at + 40]
            .iter()
            .zip(&req3)
            .map(|(a, b)| a ^ b)
            .collect();
        let Some(skey) = std::iter::once(self.skey)
            .chain(self.other_skeys.iter().copied())
            .find(|skey| named == hash(&[b"req2", skey]))
        else {
            return Err(MseError::UnknownTorrent);
        };
        self.skey = skey;
        self.input.drain(..at + 40);
        self.decrypt = Some(Cipher::new(b"keyA", &secret, &self.skey));
        self.encrypt = Some(Cipher::new(b"keyB", &secret, &self.skey));
        self.state = State::AwaitOffer;
        Ok(true)
    }

    fn read_offer(&mut self) -> Result<bool, MseError> {
        let Some(head) = self.take_decrypted(8 + 4 + 2) else {
            return Ok(false);
        };
        if head[..8] != [0u8; 8] {
            return Err(MseError::BadVerification);
        }
        let offered = CryptoSet(u32::from_be_bytes(head[8..12].try_into().expect("four")));
        let pad = Self::length_at(&head, 12);
        if pad > MAX_PAD {
            return Err(MseError::PadTooLong(pad));
        }
        self.state = State::AwaitPadC { offered, pad };
        Ok(true)
    }

    fn skip_pad_c(&mut self, offered: CryptoSet, pad: usize) -> Result<bool, MseError> {
        let Some(rest) = self.take_decrypted(pad + 2) else {
            return Ok(false);
        };
        let len = Self::length_at(&rest, pad);
        if len > MAX_IA {
            return Err(MseError::PayloadTooLong(len));
        }
        self.state = State::AwaitIa { offered, len };
        Ok(true)
    }

    fn read_ia(&mut self, offered: CryptoSet, len: usize) -> Result<bool, MseError> {
        let Some(ia) = self.take_decrypted(len) else {
            return Ok(false);
        };
        // Plaintext when both sides take it (libtorrent's default too): the handshake is
        // obfuscated either way, and RC4 costs CPU on every byte.
        let selected = [CryptoSet::PLAINTEXT, CryptoSet::RC4]
            .into_iter()
            .find(|&m| offered.contains(m) && self.methods.contains(m))
            .ok_or(MseError::NoCommonMethod { offered: offered.0 })?;
        let mut answer = [0u8; 8 + 4 + 2];
        answer[8..12].copy_from_slice(&selected.0.to_be_bytes());
        self.encrypt
            .as_mut()
            .expect("keys are set")
            .apply(&mut answer);
        self.output.extend_from_slice(&answer);
        self.selected = Some(selected);
        self.ia = ia;
        self.state = State::Done;
        Ok(true)
    }

    fn finish(&mut self) -> Established {
        let mut rest = std::mem::take(&mut self.input);
        let rc4 = self.selected == Some(CryptoSet::RC4);
        if rc4 {
            if let Some(decrypt) = self.decrypt.as_mut() {
                decrypt.apply(&mut rest);
            }
        }
        let mut payload = std::mem::take(&mut self.ia);
        payload.extend_from_slice(&rest);
        let ciphers = match (rc4, self.encrypt.take(), self.decrypt.take()) {
            (true, Some(e), Some(d)) => Some((e, d)),
            _ => None,
        };
        Established {
            ciphers,
            payload,
            info_hash: self.skey,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Our public key never starts with the byte a plain handshake starts with, even
    /// when the first private key drawn would give one.
    #[test]
    fn our_public_key_never_looks_like_a_plain_handshake() {
        let naive_first_byte = |seed| {
            let private = StdRng::seed_from_u64(seed).gen::<[u8; 20]>();
            let public = BigUint::from(2u32).modpow(&BigUint::from_bytes_be(&private), &prime());
            to_key_bytes(&public)[0]
        };
        let seed = (0..10_000u64)
            .find(|&seed| naive_first_byte(seed) == 19)
            .expect("a seed whose first key starts with 19");
        for make in [MseHandshake::initiator, MseHandshake::responder] {
            let mut handshake = make([1; 20], CryptoSet::BOTH, &mut StdRng::seed_from_u64(seed));
            assert_ne!(handshake.take_output()[0], 19);
        }
    }

    const HASH: [u8; 20] = [0xab; 20];

    /// Runs both sides, delivering each side's output to the other in pieces of at most
    /// `chunk` bytes; `a_then` is what the initiator sends after its handshake (through
    /// its cipher, as a driver would).
    fn run(
        offer: CryptoSet,
        accept: CryptoSet,
        responder_hash: [u8; 20],
        chunk: usize,
        seed: u64,
    ) -> Result<(Established, Established), MseError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut a = MseHandshake::initiator(HASH, offer, &mut rng);
        let mut b = MseHandshake::responder(responder_hash, accept, &mut rng);
        let (mut done_a, mut done_b) = (None, None);
        for _ in 0..1000 {
            let to_b = a.take_output();
            for piece in to_b.chunks(chunk) {
                if done_b.is_none() {
                    done_b = b.feed(piece)?;
                }
            }
            let to_a = b.take_output();
            for piece in to_a.chunks(chunk) {
                if done_a.is_none() {
                    done_a = a.feed(piece)?;
                }
            }
            if let (Some(_), Some(_)) = (&done_a, &done_b) {
                break;
            }
        }
        Ok((
            done_a.expect("initiator done"),
            done_b.expect("responder done"),
        ))
    }

    #[test]
    fn both_sides_agree_on_rc4_and_their_streams_decrypt() {
        for (seed, chunk) in [(1, 1), (2, 7), (3, 1000)] {
            let (a, b) = run(CryptoSet::RC4, CryptoSet::BOTH, HASH, chunk, seed).unwrap();
            assert!(a.payload.is_empty() && b.payload.is_empty());
            let (mut a_send, mut a_recv) = a.ciphers.expect("RC4 chosen");
            let (mut b_send, mut b_recv) = b.ciphers.expect("RC4 chosen");
            let mut msg = b"\x13BitTorrent protocol".to_vec();
            a_send.apply(&mut msg);
            assert_ne!(&msg[..], b"\x13BitTorrent protocol");
            b_recv.apply(&mut msg);
            assert_eq!(&msg[..], b"\x13BitTorrent protocol");
            let mut back = vec![5u8; 3000];
            b_send.apply(&mut back);
            a_recv.apply(&mut back);
            assert_eq!(back, vec![5u8; 3000]);
        }
    }

    #[test]
    fn plaintext_when_both_take_it() {
        for accept in [CryptoSet::PLAINTEXT, CryptoSet::BOTH] {
            let (a, b) = run(CryptoSet::BOTH, accept, HASH, 13, 4).unwrap();
            assert!(a.ciphers.is_none() && b.ciphers.is_none());
        }
        let (a, b) = run(CryptoSet::BOTH, CryptoSet::RC4, HASH, 13, 4).unwrap();
        assert!(a.ciphers.is_some() && b.ciphers.is_some());
        let err = run(CryptoSet::RC4, CryptoSet::PLAINTEXT, HASH, 13, 5).unwrap_err();
        assert_eq!(err, MseError::NoCommonMethod { offered: 2 });
    }

    #[test]
    fn bytes_after_the_handshake_come_out_decrypted() {
        // Step by step, each side's whole output at once: the ciphers each side ends
        // with carry the stream (the initiator's bytes come out right at the responder),
        // and nothing is left over as payload.
        let mut rng = StdRng::seed_from_u64(6);
        let mut a = MseHandshake::initiator(HASH, CryptoSet::RC4, &mut rng);
        let mut b = MseHandshake::responder(HASH, CryptoSet::BOTH, &mut rng);
        let ya = a.take_output();
        assert!(b.feed(&ya).unwrap().is_none());
        let yb = b.take_output();
        assert!(a.feed(&yb).unwrap().is_none());
        let offer = a.take_output();
        let done_b = b.feed(&offer).unwrap().expect("responder done");
        let answer = b.take_output();
        let done_a = a.feed(&answer).unwrap().expect("initiator done");
        assert!(done_a.payload.is_empty());
        assert_ciphers_carry(done_a, done_b);
    }

    /// What the initiator's cipher sends, the responder's decrypts.
    fn assert_ciphers_carry(initiator: Established, responder: Established) {
        let (mut send, _) = initiator.ciphers.unwrap();
        let (_, mut recv) = responder.ciphers.unwrap();
        let mut later = b"hello".to_vec();
        send.apply(&mut later);
        recv.apply(&mut later);
        assert_eq!(later, b"hello");
    }

    #[test]
    fn a_plain_handshake_in_reply_fails_at_once() {
        let mut rng = StdRng::seed_from_u64(10);
        let mut a = MseHandshake::initiator(HASH, CryptoSet::BOTH, &mut rng);
        let mut reply = vec![19u8];
        reply.extend_from_slice(crate::PROTOCOL);
        assert!(a.feed(&reply[..7]).unwrap().is_none());
        assert_eq!(a.feed(&reply[7..]).unwrap_err(), MseError::PlainReply);
    }

    #[test]
    fn a_peer_asking_for_another_torrent_is_refused() {
        let err = run(CryptoSet::BOTH, CryptoSet::BOTH, [0x11; 20], 50, 7).unwrap_err();
        assert_eq!(err, MseError::UnknownTorrent);
    }

    /// A hybrid torrent's two swarms and a session's other torrent: the responder serves
    /// every info-hash and learns which one the peer named; a fourth is refused.
    #[test]
    fn a_responder_serving_several_torrents_takes_any() {
        let (v1, v2, other) = ([0x11; 20], HASH, [0x33; 20]);
        for (named, ok) in [(v1, true), (v2, true), (other, true), ([0x22; 20], false)] {
            let mut rng = StdRng::seed_from_u64(12);
            let mut a = MseHandshake::initiator(named, CryptoSet::RC4, &mut rng);
            let mut b = MseHandshake::responder(v1, CryptoSet::BOTH, &mut rng)
                .also_serving(v2)
                .also_serving(other);
            assert!(b.feed(&a.take_output()).unwrap().is_none());
            assert!(a.feed(&b.take_output()).unwrap().is_none());
            let offer = a.take_output();
            if !ok {
                assert_eq!(b.feed(&offer).unwrap_err(), MseError::UnknownTorrent);
                continue;
            }
            let done_b = b.feed(&offer).unwrap().expect("responder done");
            assert_eq!(b.info_hash(), named);
            let done_a = a.feed(&b.take_output()).unwrap().expect("initiator done");
            assert_ciphers_carry(done_a, done_b);
        }
    }

    #[test]
    fn garbage_and_bad_keys_fail_within_bounds() {
        let mut rng = StdRng::seed_from_u64(8);
        // Keys of 0, 1, P - 1, P and above P are refused.
        for key in [
            BigUint::from(0u32),
            BigUint::from(1u32),
            prime() - 1u32,
            prime(),
            BigUint::from_bytes_be(&[0xff; KEY_LEN]),
        ] {
            let mut b = MseHandshake::responder(HASH, CryptoSet::BOTH, &mut rng);
            assert_eq!(b.feed(&to_key_bytes(&key)).unwrap_err(), MseError::BadKey);
        }
        // A valid key then random bytes: no req1 within the padding allowed.
        let mut a = MseHandshake::initiator(HASH, CryptoSet::BOTH, &mut rng);
        let mut b = MseHandshake::responder(HASH, CryptoSet::BOTH, &mut rng);
        let ya = a.take_output();
        b.feed(&ya[..KEY_LEN]).unwrap();
        let noise: Vec<u8> = (0..MAX_PAD + 20).map(|_| rng.gen()).collect();
        assert_eq!(b.feed(&noise).unwrap_err(), MseError::NoSync);
        // And an initiator that never finds the responder's verification constant.
        let mut a = MseHandshake::initiator(HASH, CryptoSet::BOTH, &mut rng);
        let mut b = MseHandshake::responder(HASH, CryptoSet::BOTH, &mut rng);
        b.feed(&a.take_output()).unwrap();
        let yb = b.take_output();
        a.feed(&yb[..KEY_LEN]).unwrap();
        let noise: Vec<u8> = (0..MAX_PAD + 8).map(|_| rng.gen()).collect();
        assert_eq!(a.feed(&noise).unwrap_err(), MseError::NoSync);
    }

    #[test]
    fn a_bad_offer_is_refused() {
        // Initiators' offers built by hand: a 600-byte PadC, a 69-byte initial payload,
        // nothing offered, a wrong verification constant.
        let mut rng = StdRng::seed_from_u64(9);
        let mut a = MseHandshake::initiator(HASH, CryptoSet::BOTH, &mut rng);
        let mut b = MseHandshake::responder(HASH, CryptoSet::BOTH, &mut rng);
        let ya = a.take_output();
        b.feed(&ya).unwrap();
        let yb = b.take_output();
        a.feed(&yb).unwrap();
        let secret = a.secret.unwrap();
        let mut forged = a.take_output()[..40].to_vec();
        for (vc, provide, pad, ia, want) in [
            (0u8, 3u32, 600u16, 0u16, MseError::PadTooLong(600)),
            (0, 3, 0, 69, MseError::PayloadTooLong(69)),
            (0, 0, 0, 0, MseError::NoCommonMethod { offered: 0 }),
            (1, 3, 0, 0, MseError::BadVerification),
        ] {
            let mut b2 = MseHandshake::responder(HASH, CryptoSet::BOTH, &mut rng);
            b2.private = b.private.clone();
            b2.feed(&ya).unwrap();
            let mut enc = Cipher::new(b"keyA", &secret, &HASH);
            let mut offer = vec![vc, 0, 0, 0, 0, 0, 0, 0];
            offer.extend_from_slice(&provide.to_be_bytes());
            offer.extend_from_slice(&pad.to_be_bytes());
            if pad == 0 {
                offer.extend_from_slice(&ia.to_be_bytes());
            }
            enc.apply(&mut offer);
            forged.truncate(40);
            forged.extend_from_slice(&offer);
            assert_eq!(b2.feed(&forged).unwrap_err(), want);
        }
    }
}

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;

    proptest! {
        /// Any bytes: never a panic, the same outcome whole or a byte at a time, and
        /// never more than the handshake's windows kept (`fuzzing::mse`, which the fuzz
        /// target runs too).
        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            data in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            crate::fuzzing::mse(&data);
        }
    }
}
