//! RSA big-number work aws-lc-rs does not expose, done with aws-lc's own BIGNUM/RSA functions
//! through `aws-lc-sys` (the library aws-lc-rs wraps; no second crypto implementation):
//!
//! - recovering the prime factors and CRT parameters from `(n, e, d)`, for JWK imports that
//!   carry only the private exponent (aws-lc-rs builds private keys only from complete CRT
//!   components);
//! - generating a key with a public exponent other than 65537 (aws-lc-rs always uses 65537).
//!
//! The method is the standard one (NIST SP 800-56B rev. 2, appendix C.2): with `k = d·e − 1 =
//! 2^t·r`, a random-looking base `g` gives a non-trivial square root of 1 modulo `n` with
//! probability ≥ 1/2, and `gcd(y − 1, n)` is then a prime factor. The resulting components are
//! checked again by `RSA_check_key` when the key pair is built from them.

use crate::CryptoError;
use aws_lc_sys::{
    BN_CTX_free, BN_CTX_new, BN_bin2bn, BN_bn2bin, BN_clear_free, BN_cmp, BN_copy, BN_div, BN_gcd,
    BN_is_odd, BN_is_one, BN_is_zero, BN_mod_exp, BN_mod_inverse, BN_mod_mul, BN_mul, BN_new,
    BN_nnmod, BN_num_bytes, BN_rshift1, BN_set_word, BN_sub_word, RSA_free, RSA_generate_key_ex,
    RSA_get0_crt_params, RSA_get0_factors, RSA_get0_key, RSA_new, BIGNUM, BN_CTX,
};
use zeroize::Zeroizing;

/// An owned BIGNUM, cleared and freed on drop (most values here are secret).
struct Bn(*mut BIGNUM);

impl Bn {
    fn new() -> Result<Bn, CryptoError> {
        // SAFETY: BN_new has no preconditions; a null result is handled.
        let ptr = unsafe { BN_new() };
        if ptr.is_null() {
            Err(CryptoError::Internal("BN_new"))
        } else {
            Ok(Bn(ptr))
        }
    }

    fn from_be(bytes: &[u8]) -> Result<Bn, CryptoError> {
        let bn = Bn::new()?;
        // SAFETY: `bytes` is valid for `len` bytes and `bn.0` is a live BIGNUM.
        let out = unsafe { BN_bin2bn(bytes.as_ptr(), bytes.len(), bn.0) };
        if out.is_null() {
            return Err(CryptoError::Internal("BN_bin2bn"));
        }
        Ok(bn)
    }

    fn word(value: u64) -> Result<Bn, CryptoError> {
        let bn = Bn::new()?;
        // SAFETY: `bn.0` is a live BIGNUM.
        check(unsafe { BN_set_word(bn.0, value) })?;
        Ok(bn)
    }

    fn copy(&self) -> Result<Bn, CryptoError> {
        let bn = Bn::new()?;
        // SAFETY: both pointers are live BIGNUMs.
        if unsafe { BN_copy(bn.0, self.0) }.is_null() {
            return Err(CryptoError::Internal("BN_copy"));
        }
        Ok(bn)
    }

    fn to_be(&self) -> Zeroizing<Vec<u8>> {
        // SAFETY: `self.0` is a live BIGNUM; the buffer holds BN_num_bytes bytes.
        let len = unsafe { BN_num_bytes(self.0) } as usize;
        let mut out = Zeroizing::new(vec![0u8; len]);
        // SAFETY: as above.
        let written = unsafe { BN_bn2bin(self.0, out.as_mut_ptr()) };
        out.truncate(written);
        out
    }

    fn is_one(&self) -> bool {
        // SAFETY: `self.0` is a live BIGNUM.
        unsafe { BN_is_one(self.0) == 1 }
    }

    fn is_zero(&self) -> bool {
        // SAFETY: `self.0` is a live BIGNUM.
        unsafe { BN_is_zero(self.0) == 1 }
    }

    fn is_odd(&self) -> bool {
        // SAFETY: `self.0` is a live BIGNUM.
        unsafe { BN_is_odd(self.0) == 1 }
    }

    fn eq(&self, other: &Bn) -> bool {
        // SAFETY: both are live BIGNUMs.
        unsafe { BN_cmp(self.0, other.0) == 0 }
    }
}

impl Drop for Bn {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from BN_new and is freed exactly once.
        unsafe { BN_clear_free(self.0) }
    }
}

struct Ctx(*mut BN_CTX);

impl Drop for Ctx {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from BN_CTX_new and is freed exactly once.
        unsafe { BN_CTX_free(self.0) }
    }
}

fn check(status: std::os::raw::c_int) -> Result<(), CryptoError> {
    if status == 1 {
        Ok(())
    } else {
        Err(CryptoError::InvalidKey)
    }
}

/// Every component of a generated RSA key, big-endian.
pub(crate) struct Generated {
    pub n: Zeroizing<Vec<u8>>,
    pub e: Zeroizing<Vec<u8>>,
    pub d: Zeroizing<Vec<u8>>,
    pub crt: Crt,
}

/// Big-endian bytes of a BIGNUM owned by someone else (null → error).
fn borrowed_be(bn: *const BIGNUM) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if bn.is_null() {
        return Err(CryptoError::Internal("missing RSA component"));
    }
    // SAFETY: `bn` is a live BIGNUM owned by an RSA object the caller keeps alive.
    let len = unsafe { BN_num_bytes(bn) } as usize;
    let mut out = Zeroizing::new(vec![0u8; len]);
    // SAFETY: as above; the buffer holds `len` bytes.
    let written = unsafe { BN_bn2bin(bn, out.as_mut_ptr()) };
    out.truncate(written);
    Ok(out)
}

/// Generates a `bits`-bit RSA key with public exponent `e` (odd, > 1).
pub(crate) fn generate_with_exponent(bits: u32, e: u32) -> Result<Generated, CryptoError> {
    if e < 3 || e & 1 == 0 {
        return Err(CryptoError::InvalidInput(
            "the public exponent must be odd and at least 3",
        ));
    }
    struct Rsa(*mut aws_lc_sys::RSA);
    impl Drop for Rsa {
        fn drop(&mut self) {
            // SAFETY: from RSA_new, freed once (RSA_free clears private components).
            unsafe { RSA_free(self.0) }
        }
    }
    // SAFETY: RSA_new has no preconditions; a null result is handled.
    let rsa = Rsa(unsafe { RSA_new() });
    if rsa.0.is_null() {
        return Err(CryptoError::Internal("RSA_new"));
    }
    let exponent = Bn::word(u64::from(e))?;
    let bits = std::os::raw::c_int::try_from(bits).map_err(|_| CryptoError::InvalidKey)?;
    // SAFETY: live RSA and BIGNUM; no progress callback.
    if unsafe { RSA_generate_key_ex(rsa.0, bits, exponent.0, std::ptr::null_mut()) } != 1 {
        return Err(CryptoError::Internal("RSA generation"));
    }
    let (mut n, mut e, mut d) = (std::ptr::null(), std::ptr::null(), std::ptr::null());
    let (mut p, mut q) = (std::ptr::null(), std::ptr::null());
    let (mut dp, mut dq, mut qi) = (std::ptr::null(), std::ptr::null(), std::ptr::null());
    // SAFETY: `rsa.0` is live; the getters only write borrowed pointers.
    unsafe {
        RSA_get0_key(rsa.0, &mut n, &mut e, &mut d);
        RSA_get0_factors(rsa.0, &mut p, &mut q);
        RSA_get0_crt_params(rsa.0, &mut dp, &mut dq, &mut qi);
    }
    Ok(Generated {
        n: borrowed_be(n)?,
        e: borrowed_be(e)?,
        d: borrowed_be(d)?,
        crt: Crt {
            p: borrowed_be(p)?,
            q: borrowed_be(q)?,
            dp: borrowed_be(dp)?,
            dq: borrowed_be(dq)?,
            qi: borrowed_be(qi)?,
        },
    })
}

/// The CRT components recovered from `(n, e, d)`, big-endian.
pub(crate) struct Crt {
    pub p: Zeroizing<Vec<u8>>,
    pub q: Zeroizing<Vec<u8>>,
    pub dp: Zeroizing<Vec<u8>>,
    pub dq: Zeroizing<Vec<u8>>,
    pub qi: Zeroizing<Vec<u8>>,
}

/// Factors `n` from the key pair `(e, d)` and derives `dp`, `dq` and `qi`. Fails with
/// `InvalidKey` when `(n, e, d)` is not a consistent RSA key.
pub(crate) fn recover(n: &[u8], e: &[u8], d: &[u8]) -> Result<Crt, CryptoError> {
    // SAFETY: BN_CTX_new has no preconditions; a null result is handled.
    let ctx = Ctx(unsafe { BN_CTX_new() });
    if ctx.0.is_null() {
        return Err(CryptoError::Internal("BN_CTX_new"));
    }
    let n = Bn::from_be(n)?;
    let e = Bn::from_be(e)?;
    let d = Bn::from_be(d)?;
    if n.is_zero() || e.is_zero() || d.is_zero() || !n.is_odd() {
        return Err(CryptoError::InvalidKey);
    }
    // k = d·e − 1 = 2^t · r
    let k = Bn::new()?;
    // SAFETY (all calls below): every pointer is a live BIGNUM/BN_CTX owned by this function;
    // aws-lc allows the result to alias no input here because fresh BIGNUMs are used.
    check(unsafe { BN_mul(k.0, d.0, e.0, ctx.0) })?;
    check(unsafe { BN_sub_word(k.0, 1) })?;
    if k.is_zero() || k.is_odd() {
        return Err(CryptoError::InvalidKey);
    }
    let r = k.copy()?;
    let mut t = 0u32;
    while !r.is_odd() {
        check(unsafe { BN_rshift1(r.0, r.0) })?;
        t += 1;
    }
    let n_minus_1 = n.copy()?;
    check(unsafe { BN_sub_word(n_minus_1.0, 1) })?;

    let y = Bn::new()?;
    let x = Bn::new()?;
    let p = Bn::new()?;
    let mut found = false;
    'bases: for g in 2..=200u64 {
        let g = Bn::word(g)?;
        check(unsafe { BN_mod_exp(y.0, g.0, r.0, n.0, ctx.0) })?;
        if y.is_one() || y.eq(&n_minus_1) {
            continue;
        }
        for _ in 0..t {
            check(unsafe { BN_mod_mul(x.0, y.0, y.0, n.0, ctx.0) })?;
            if x.is_one() {
                // y is a non-trivial square root of 1: gcd(y − 1, n) is a factor.
                check(unsafe { BN_sub_word(y.0, 1) })?;
                check(unsafe { BN_gcd(p.0, y.0, n.0, ctx.0) })?;
                found = true;
                break 'bases;
            }
            if x.eq(&n_minus_1) {
                continue 'bases;
            }
            if unsafe { BN_copy(y.0, x.0) }.is_null() {
                return Err(CryptoError::Internal("BN_copy"));
            }
        }
    }
    if !found || p.is_one() || p.eq(&n) {
        return Err(CryptoError::InvalidKey);
    }
    let q = Bn::new()?;
    let rem = Bn::new()?;
    check(unsafe { BN_div(q.0, rem.0, n.0, p.0, ctx.0) })?;
    if !rem.is_zero() {
        return Err(CryptoError::InvalidKey);
    }
    // Conventionally p > q.
    let (p, q) = if unsafe { BN_cmp(p.0, q.0) } < 0 {
        (q, p)
    } else {
        (p, q)
    };
    let p1 = p.copy()?;
    check(unsafe { BN_sub_word(p1.0, 1) })?;
    let q1 = q.copy()?;
    check(unsafe { BN_sub_word(q1.0, 1) })?;
    let dp = Bn::new()?;
    check(unsafe { BN_nnmod(dp.0, d.0, p1.0, ctx.0) })?;
    let dq = Bn::new()?;
    check(unsafe { BN_nnmod(dq.0, d.0, q1.0, ctx.0) })?;
    let qi = Bn::new()?;
    if unsafe { BN_mod_inverse(qi.0, q.0, p.0, ctx.0) }.is_null() {
        return Err(CryptoError::InvalidKey);
    }
    Ok(Crt {
        p: p.to_be(),
        q: q.to_be(),
        dp: dp.to_be(),
        dq: dq.to_be(),
        qi: qi.to_be(),
    })
}
