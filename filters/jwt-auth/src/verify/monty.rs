//! Montgomery arithmetic for RSA's public operation, shaped for a wasm VM.
//!
//! Numbers are little-endian limbs of [`W`] = 27 bits held in `u32`s, so a product of two limbs
//! fits in 54 bits and a whole column of a product (at most [`MAX_LIMBS`] of them, plus a
//! carry) sums in a `u64` without a carry per step. Every product and reduction is then a run
//! of dot products over contiguous slices: operands are paired with a reversed copy of the
//! other (`rev`), so column `k`'s pairs `a[i] * b[k - i]` are `a[i0..i1]` against a slice of
//! `rev(b)`. With wasm SIMD (`+simd128`) a dot product multiplies two pairs per instruction
//! (`i64x2.extmul_low_i32x4_u`); elsewhere it is a scalar loop that LLVM vectorises natively.
//!
//! Products and reductions are separate passes (separated operand scanning): a square needs
//! only the pairs `i < j`, doubled, so it costs about half a product; 16 of the 17 operations
//! of `s^65537` are squares. Only public values are involved (signature, modulus), so nothing
//! here needs to be constant time.

/// Bits per limb.
pub const W: u32 = 27;
const MASK: u64 = (1 << W) - 1;
/// The longest operand: a column sums at most this many 54-bit products plus a carry below
/// 2^37 without overflowing 64 bits (1023 limbs is 27,621 bits, far above any accepted key).
pub const MAX_LIMBS: usize = 1023;

/// An odd modulus with what Montgomery multiplication needs, for `R = 2^(W * len)`.
#[derive(Debug, Clone)]
pub struct Modulus {
    n: Vec<u32>,
    n_rev: Vec<u32>,
    /// `-n^-1 mod 2^W`.
    n0inv: u32,
    /// `R^2 mod n`: multiplying by it brings a value into Montgomery form.
    r2: Vec<u32>,
    /// Always 0, read at run time: see [`dot`].
    zero: u32,
}

impl Modulus {
    /// From big-endian bytes; `None` for an even, zero or over-long modulus.
    pub fn new(be: &[u8]) -> Option<Self> {
        let n = from_be_bytes(be, limbs_for(be.len() * 8)?);
        if n.first()? & 1 == 0 || n.iter().all(|l| *l == 0) {
            return None;
        }
        let n_rev = n.iter().rev().copied().collect();
        // Newton's iteration doubles the correct low bits of an odd number's inverse each
        // step: n0 is its own inverse mod 8, and 5 steps give 96 > 32 bits.
        let n0 = n[0];
        let mut inv = n0;
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        let n0inv = (inv.wrapping_neg() as u64 & MASK) as u32;
        let r2 = r_squared(&n);
        Some(Self {
            n,
            n_rev,
            n0inv,
            r2,
            zero: 0,
        })
    }

    fn limbs(&self) -> usize {
        self.n.len()
    }

    /// `x^e mod n` for big-endian `x` below `n`, as `k` big-endian bytes (`None` if the value
    /// does not fit in `k` bytes, which a value below an `k`-byte modulus always does).
    pub fn pow_be(&self, x: &[u8], e: u32, k: usize) -> Option<Vec<u8>> {
        let l = self.limbs();
        let top = 31u32.checked_sub(e.leading_zeros())?;
        let mut w = Work::new(l);
        let x = from_be_bytes(x, l);
        let mut xm = vec![0u32; l];
        self.mul_into(&x, Some(&self.r2), &mut w, &mut xm);
        let mut acc = xm.clone();
        let mut next = vec![0u32; l];
        for i in (0..top).rev() {
            self.mul_into(&acc, None, &mut w, &mut next);
            std::mem::swap(&mut acc, &mut next);
            if (e >> i) & 1 == 1 {
                self.mul_into(&acc, Some(&xm), &mut w, &mut next);
                std::mem::swap(&mut acc, &mut next);
            }
        }
        // Out of Montgomery form: REDC of the plain value.
        w.t[..l].copy_from_slice(&acc);
        w.t[l..].fill(0);
        self.reduce_into(&w.t, &mut w.m, &mut next);
        to_be_bytes(&next, k)
    }

    /// `out = a * b * R^-1 mod n`; `b` = `None` squares `a`, computing only the pairs
    /// `a[i] * a[j]`, `i < j`, once and doubled.
    fn mul_into(&self, a: &[u32], b: Option<&[u32]>, w: &mut Work, out: &mut [u32]) {
        let l = self.limbs();
        let Work { rev, t, m } = w;
        for (r, x) in rev.iter_mut().zip(b.unwrap_or(a).iter().rev()) {
            *r = *x;
        }
        let mut carry = 0u64;
        for (k, tk) in t.iter_mut().enumerate().take(2 * l - 1) {
            // Column k pairs a[i] with rev[j0 + i - i0] = b[k - i].
            let i0 = k.saturating_sub(l - 1);
            let j0 = l - 1 + i0 - k;
            let mut s = carry;
            if b.is_some() {
                let i1 = k.min(l - 1) + 1;
                s += dot(&a[i0..i1], &rev[j0..j0 + (i1 - i0)], self.zero);
            } else {
                let i1 = k.div_ceil(2);
                if i1 > i0 {
                    s += 2 * dot(&a[i0..i1], &rev[j0..j0 + (i1 - i0)], self.zero);
                }
                if k % 2 == 0 {
                    let d = u64::from(a[k / 2]);
                    s += d * d;
                }
            }
            *tk = (s & MASK) as u32;
            carry = s >> W;
        }
        t[2 * l - 1] = carry as u32;
        self.reduce_into(t, m, out);
    }

    /// Montgomery reduction of a `2 * len`-limb `t < n * R` into `out`: `t * R^-1 mod n`,
    /// fully reduced (`m` is scratch, `len` limbs).
    fn reduce_into(&self, t: &[u32], m: &mut [u32], out: &mut [u32]) {
        let l = self.limbs();
        let mut carry = 0u64;
        for i in 0..l {
            // Column i: t[i] + sum over j < i of m[j] * n[i - j], then the m[i] that zeroes it.
            let s =
                carry + u64::from(t[i]) + dot(&m[..i], &self.n_rev[l - 1 - i..l - 1], self.zero);
            let mi = u64::from((s as u32).wrapping_mul(self.n0inv)) & MASK;
            m[i] = mi as u32;
            carry = (s + mi * u64::from(self.n[0])) >> W;
        }
        for (i, ri) in (l..2 * l).zip(out.iter_mut()) {
            let s = carry
                + u64::from(t[i])
                + dot(&m[i - l + 1..], &self.n_rev[..2 * l - 1 - i], self.zero);
            *ri = (s & MASK) as u32;
            carry = s >> W;
        }
        // (t + m n) / R < 2n: one conditional subtraction, with the bit above the limbs.
        if carry > 0 || !less_than(out, &self.n) {
            sub_in_place(out, &self.n);
        }
    }
}

/// The scratch one exponentiation reuses for every product: a reversed operand, the
/// double-length product and the reduction's multipliers (no allocation per operation).
struct Work {
    rev: Vec<u32>,
    t: Vec<u32>,
    m: Vec<u32>,
}

impl Work {
    fn new(limbs: usize) -> Self {
        Self {
            rev: vec![0; limbs],
            t: vec![0; 2 * limbs],
            m: vec![0; limbs],
        }
    }
}

/// The number of limbs for a modulus of up to `bits` bits; `None` above [`MAX_LIMBS`].
fn limbs_for(bits: usize) -> Option<usize> {
    let l = bits.div_ceil(W as usize).max(1);
    (l <= MAX_LIMBS).then_some(l)
}

/// `R^2 mod n` by doubling: start from the highest power of two below `n` and double, each
/// time subtracting `n` when the value reaches it, up to `2^(2 W len)`. Once per key.
fn r_squared(n: &[u32]) -> Vec<u32> {
    let l = n.len();
    let top_limb = n.iter().rposition(|x| *x != 0).unwrap_or(0);
    let top_bit = 31 - n[top_limb].leading_zeros() as usize;
    let start = top_limb * W as usize + top_bit;
    let mut v = vec![0u32; l];
    v[top_limb] = 1 << top_bit;
    for _ in start..2 * W as usize * l {
        // v < n, so 2v < 2n and one subtraction reduces it; the shifted-out bit counts.
        let mut carry = 0u32;
        for x in v.iter_mut() {
            let y = (*x << 1) | carry;
            carry = y >> W;
            *x = y & MASK as u32;
        }
        if carry > 0 || !less_than(&v, n) {
            sub_in_place(&mut v, n);
        }
    }
    v
}

/// `a < b` for equal-length limb vectors.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` modulo `2^(W len)` (the caller knows the true result is non-negative once the bit
/// above the limbs is counted).
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0i64;
    for (x, y) in a.iter_mut().zip(b) {
        let d = i64::from(*x) - i64::from(*y) - borrow;
        borrow = i64::from(d < 0);
        *x = (d & MASK as i64) as u32;
    }
}

/// Big-endian bytes into `len` limbs (bits beyond `len * W` are dropped; callers size `len`).
fn from_be_bytes(be: &[u8], len: usize) -> Vec<u32> {
    let mut out = vec![0u32; len];
    let mut acc = 0u64;
    let mut bits = 0u32;
    let mut i = 0;
    for b in be.iter().rev() {
        acc |= u64::from(*b) << bits;
        bits += 8;
        if bits >= W {
            if let Some(o) = out.get_mut(i) {
                *o = (acc & MASK) as u32;
            }
            i += 1;
            acc >>= W;
            bits -= W;
        }
    }
    if let Some(o) = out.get_mut(i) {
        *o = acc as u32;
    }
    out
}

/// Limbs into exactly `k` big-endian bytes; `None` if the value needs more.
fn to_be_bytes(limbs: &[u32], k: usize) -> Option<Vec<u8>> {
    let mut out = vec![0u8; k];
    let mut acc = 0u64;
    let mut bits = 0u32;
    let mut pos = k;
    for l in limbs {
        acc |= u64::from(*l) << bits;
        bits += W;
        while bits >= 8 {
            let byte = (acc & 0xff) as u8;
            if pos == 0 {
                if byte != 0 {
                    return None;
                }
            } else {
                pos -= 1;
                out[pos] = byte;
            }
            acc >>= 8;
            bits -= 8;
        }
    }
    if acc != 0 {
        if pos == 0 {
            return None;
        }
        out[pos - 1] = acc as u8;
    }
    Some(out)
}

/// `sum a[i] * b[i]` for equal-length slices (a longer one's extra limbs are ignored).
///
/// `zero` is always 0 and is OR-ed into every loaded vector. Without it LLVM folds
/// `extmul(load)` into `load32x2_u` + `i64x2.mul`, and V8 has no 64-bit lane multiply on x86
/// (it emulates one with three `pmuludq`), where `extmul` is one `pmuludq` and a shuffle: the
/// OR with a value it cannot see is cheaper than the fold (measured with rsa-vm-bench.sh).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn dot(a: &[u32], b: &[u32], zero: u32) -> u64 {
    use core::arch::wasm32::{
        u32x4, u32x4_splat, u64x2_add, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4,
        u64x2_extract_lane, u64x2_splat, v128_or,
    };
    let z = u32x4_splat(zero);
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = u64x2_splat(0);
    for (x, y) in ca.zip(cb) {
        let vx = v128_or(u32x4(x[0], x[1], x[2], x[3]), z);
        let vy = v128_or(u32x4(y[0], y[1], y[2], y[3]), z);
        acc = u64x2_add(acc, u64x2_extmul_low_u32x4(vx, vy));
        acc = u64x2_add(acc, u64x2_extmul_high_u32x4(vx, vy));
    }
    let head = u64x2_extract_lane::<0>(acc) + u64x2_extract_lane::<1>(acc);
    head + dot_scalar(ra, rb)
}

/// `sum a[i] * b[i]` for equal-length slices (`zero` is for the SIMD version).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn dot(a: &[u32], b: &[u32], _zero: u32) -> u64 {
    dot_scalar(a, b)
}

#[inline(always)]
fn dot_scalar(a: &[u32], b: &[u32]) -> u64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| u64::from(*x) * u64::from(*y))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::BigUint;

    /// splitmix64: reproducible test inputs without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn be(x: &BigUint, k: usize) -> Vec<u8> {
        let b = x.to_bytes_be();
        let mut out = vec![0u8; k - b.len()];
        out.extend(b);
        out
    }

    /// Moduli of the shapes that stress carries and the final subtraction: random, all ones,
    /// just above a power of two, and sizes whose bits end mid-limb and on a limb boundary.
    fn moduli(rng: &mut Rng) -> Vec<Vec<u8>> {
        let mut out = vec![];
        for bytes in [256, 257, 384, 512, 270] {
            let mut n = rng.bytes(bytes);
            n[0] |= 0x80;
            *n.last_mut().unwrap() |= 1;
            out.push(n);
            out.push(vec![0xff; bytes]);
            let mut p = vec![0u8; bytes];
            p[0] = 0x80;
            p[bytes - 1] = 1;
            out.push(p);
        }
        // 2052 bits = 76 limbs exactly; all ones makes n as close to R as it gets.
        let mut n = vec![0xffu8; 257];
        n[0] = 0x0f;
        out.push(n);
        out
    }

    #[test]
    fn powers_match_a_reference_big_integer() {
        let mut rng = Rng(7);
        for n_be in moduli(&mut rng) {
            let k = n_be.len();
            let n = BigUint::from_bytes_be(&n_be);
            let m = Modulus::new(&n_be).unwrap();
            let nm1 = &n - 1u32;
            let mut xs = vec![BigUint::from(0u32), BigUint::from(1u32), nm1.clone()];
            for _ in 0..6 {
                xs.push(BigUint::from_bytes_be(&rng.bytes(k)) % &n);
            }
            for x in xs {
                for e in [3u32, 65537] {
                    let want = x.modpow(&BigUint::from(e), &n);
                    let got = m.pow_be(&be(&x, k), e, k).unwrap();
                    assert_eq!(got, be(&want, k), "{} bits, e={e}", n.bits());
                }
            }
        }
    }

    #[test]
    fn montgomery_products_match_the_definition() {
        let mut rng = Rng(11);
        let n_be = moduli(&mut rng).swap_remove(0);
        let k = n_be.len();
        let n = BigUint::from_bytes_be(&n_be);
        let m = Modulus::new(&n_be).unwrap();
        let r = BigUint::from(1u32) << (W as usize * m.limbs());
        for _ in 0..20 {
            let a = BigUint::from_bytes_be(&rng.bytes(k)) % &n;
            let b = BigUint::from_bytes_be(&rng.bytes(k)) % &n;
            let (al, bl) = (
                from_be_bytes(&be(&a, k), m.limbs()),
                from_be_bytes(&be(&b, k), m.limbs()),
            );
            // mul(a, b) * R == a * b (mod n), and square agrees with mul.
            let mut w = Work::new(m.limbs());
            let (mut ab, mut aa, mut sq) =
                (vec![0; m.limbs()], vec![0; m.limbs()], vec![0; m.limbs()]);
            m.mul_into(&al, Some(&bl), &mut w, &mut ab);
            m.mul_into(&al, Some(&al), &mut w, &mut aa);
            m.mul_into(&al, None, &mut w, &mut sq);
            let p = BigUint::from_bytes_be(&to_be_bytes(&ab, k).unwrap());
            assert!(p < n);
            assert_eq!((&p * &r) % &n, (&a * &b) % &n);
            assert_eq!(sq, aa);
        }
    }

    #[test]
    fn limbs_round_trip_bytes() {
        let mut rng = Rng(3);
        for k in [1, 3, 27, 256, 257, 512] {
            let b = rng.bytes(k);
            let l = limbs_for(k * 8).unwrap();
            assert_eq!(to_be_bytes(&from_be_bytes(&b, l), k).unwrap(), b);
        }
        // A value that needs more than k bytes is refused.
        assert_eq!(to_be_bytes(&[0, 1 << 10], 3), None);
    }

    #[test]
    fn even_zero_and_oversized_moduli_are_refused() {
        assert!(Modulus::new(&[0x80, 0x02]).is_none());
        assert!(Modulus::new(&[0, 0]).is_none());
        assert!(Modulus::new(&vec![0xff; MAX_LIMBS * W as usize / 8 + 8]).is_none());
        assert!(Modulus::new(&[0x80, 0x03]).is_some());
    }
}
