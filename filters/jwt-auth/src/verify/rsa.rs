//! RSA signature verification (RSASSA-PKCS1-v1_5 and RSASSA-PSS, RFC 8017) on the Montgomery
//! arithmetic of [`super::monty`].
//!
//! Why not the `rsa` crate: 0.9 (num-bigint-dig) costs ~0.7 ms per 2048-bit verification in V8
//! and 0.10 (crypto-bigint, windowed exponentiation over the padded exponent width) ~0.7 ms;
//! square-and-multiply over the public exponent's 17 bits on crypto-bigint's Montgomery form
//! costs ~160 us, and on `monty`'s 27-bit limbs with wasm SIMD dot products and dedicated
//! squares less (`scripts/rsa-vm-bench.sh`, docs/performance.md). Only public values are
//! involved, so variable time is fine.
//! PKCS#1 v1.5 is checked by encoding the expected block and comparing all of it (no parsing of
//! the attacker's block); PSS follows RFC 8017 §9.1.2 step by step.

use super::monty::Modulus;
use sha2::Digest;

/// Smallest modulus accepted, in bits.
pub const MIN_BITS: u32 = 2048;
/// Largest modulus accepted unless a provider's `max_rsa_key_bits` raises it.
pub const DEFAULT_MAX_BITS: u32 = 4096;
/// Largest modulus any configuration may accept.
pub const MAX_BITS: u32 = 8192;
/// The only public exponents accepted (F0 and F4): 2 and 17 bits, so the square-and-multiply
/// below does at most 17 squarings per verification whatever the JWKS says.
pub const EXPONENTS: [u32; 2] = [3, 65537];

#[derive(Debug, Clone)]
pub struct RsaPublicKey {
    /// `n`, big-endian without leading zeros (`k` bytes).
    n_be: Vec<u8>,
    modulus: Modulus,
    /// Exact bit length of `n`.
    bits: u32,
    e: u32,
}

/// The hash of an RS*/PS* algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<sha2::Sha256>(parts),
            Hash::Sha384 => run::<sha2::Sha384>(parts),
            Hash::Sha512 => run::<sha2::Sha512>(parts),
        }
    }

    /// DER `DigestInfo` prefix (RFC 8017 §9.2 note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

impl RsaPublicKey {
    /// From the big-endian `n` and `e` of a JWK, with moduli up to [`DEFAULT_MAX_BITS`].
    pub fn new(n: &[u8], e: &[u8]) -> Result<Self, &'static str> {
        Self::with_max_bits(n, e, DEFAULT_MAX_BITS)
    }

    /// From the big-endian `n` and `e` of a JWK. Refuses moduli outside
    /// `MIN_BITS..=min(max_bits, MAX_BITS)`, even moduli, and exponents other than 3 and 65537.
    pub fn with_max_bits(n: &[u8], e: &[u8], max_bits: u32) -> Result<Self, &'static str> {
        let first = n.iter().position(|b| *b != 0).unwrap_or(n.len());
        let n = &n[first..];
        let e_first = e.iter().position(|b| *b != 0).unwrap_or(e.len());
        let e = &e[e_first..];
        if e.is_empty() || e.len() > 4 {
            return Err("RSA exponent must be 3 or 65537");
        }
        let e = e.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
        if !EXPONENTS.contains(&e) {
            return Err("RSA exponent must be 3 or 65537");
        }
        // Checked on the byte length first: no big-integer work for an absurd modulus.
        let max_bits = max_bits.min(MAX_BITS);
        if n.len() > (max_bits as usize).div_ceil(8) {
            return Err("RSA modulus is larger than max_rsa_key_bits");
        }
        let bits = match n.first() {
            Some(top) => (n.len() as u32 - 1) * 8 + (8 - top.leading_zeros()),
            None => 0,
        };
        if bits < MIN_BITS {
            return Err("RSA modulus is smaller than 2048 bits");
        }
        if bits > max_bits {
            return Err("RSA modulus is larger than max_rsa_key_bits");
        }
        // Within MIN_BITS..=MAX_BITS, the only modulus `Modulus` refuses is an even one.
        let modulus = Modulus::new(n).ok_or("RSA modulus is even")?;
        Ok(Self {
            n_be: n.to_vec(),
            modulus,
            bits,
            e,
        })
    }

    /// Length of `n` in bytes (`k` in RFC 8017).
    fn k(&self) -> usize {
        self.n_be.len()
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// RSAVP1: `s^e mod n` as `k` big-endian bytes; `None` if `s` is not exactly `k` bytes or
    /// not below `n`.
    fn public_op(&self, sig: &[u8]) -> Option<Vec<u8>> {
        if sig.len() != self.k() {
            return None;
        }
        // Both are k big-endian bytes: byte order is numeric order.
        if sig >= self.n_be.as_slice() {
            return None;
        }
        self.modulus.pow_be(sig, self.e, self.k())
    }

    /// RSASSA-PKCS1-v1_5-VERIFY.
    pub fn verify_pkcs1v15(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let Some(em) = self.public_op(sig) else {
            return false;
        };
        let prefix = hash.digest_info_prefix();
        let t_len = prefix.len() + hash.output_len();
        if self.k() < t_len + 11 {
            return false;
        }
        let mut expected = vec![0xffu8; self.k()];
        expected[0] = 0x00;
        expected[1] = 0x01;
        expected[self.k() - t_len - 1] = 0x00;
        expected[self.k() - t_len..self.k() - hash.output_len()].copy_from_slice(prefix);
        expected[self.k() - hash.output_len()..].copy_from_slice(&hash.digest(&[msg]));
        em == expected
    }

    /// RSASSA-PSS-VERIFY with MGF1 over the same hash and a salt as long as the hash
    /// (RFC 7518 §3.5).
    pub fn verify_pss(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let Some(m) = self.public_op(sig) else {
            return false;
        };
        let h_len = hash.output_len();
        let s_len = h_len;
        let em_bits = self.bits as usize - 1;
        let em_len = em_bits.div_ceil(8);
        // I2OSP(m, emLen): m has k bytes; when emLen = k - 1 the top byte must be zero.
        let em = match self.k() - em_len {
            0 => &m[..],
            1 if m[0] == 0 => &m[1..],
            _ => return false,
        };
        if em_len < h_len + s_len + 2 || em[em_len - 1] != 0xbc {
            return false;
        }
        let db_len = em_len - h_len - 1;
        let (masked_db, rest) = em.split_at(db_len);
        let h = &rest[..h_len];
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8 >> unused_bits;
        if masked_db[0] & !top_mask != 0 {
            return false;
        }
        let mut db = mgf1(hash, h, db_len);
        for (d, m) in db.iter_mut().zip(masked_db) {
            *d ^= m;
        }
        db[0] &= top_mask;
        let ps_len = em_len - h_len - s_len - 2;
        if db[..ps_len].iter().any(|b| *b != 0) || db[ps_len] != 0x01 {
            return false;
        }
        let salt = &db[db_len - s_len..];
        let m_hash = hash.digest(&[msg]);
        let h2 = hash.digest(&[&[0u8; 8], &m_hash, salt]);
        h == h2.as_slice()
    }
}

fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.output_len());
    let mut counter = 0u32;
    while out.len() < len {
        out.extend_from_slice(&hash.digest(&[seed, &counter.to_be_bytes()]));
        counter += 1;
    }
    out.truncate(len);
    out
}
