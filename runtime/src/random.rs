//! A small seedable random number generator: xoshiro256++ (Blackman & Vigna), seeded
//! through SplitMix64, with uniform and standard normal (Box–Muller) samples.
//!
//! Not cryptographic. The streams are fixed: the same seed gives the same numbers on
//! every platform and in every version of this crate.
//!
//! ```
//! use adjoint_runtime::random::Rng;
//! let mut rng = Rng::seed_from_u64(42);
//! let u: f64 = rng.uniform();
//! assert!((0.0..1.0).contains(&u));
//! let x: f32 = rng.uniform_range(-1.0, 1.0);
//! assert!((-1.0..1.0).contains(&x));
//! let z: f64 = rng.normal();
//! assert!(z.is_finite());
//! ```

use crate::Float;

/// A xoshiro256++ generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

/// One step of SplitMix64, used to spread a 64-bit seed over the 256-bit state.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose stream is determined by `seed`.
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut sm = seed;
        let s = [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        // SplitMix64 never gives four zeros in a row, the one state xoshiro must avoid.
        Rng { s }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`: the top `MANTISSA_DIGITS` bits scaled, so every value is
    /// exactly representable and 1 is never reached.
    #[inline]
    pub fn uniform<E: Float>(&mut self) -> E {
        let bits = E::MANTISSA_DIGITS;
        let k = self.next_u64() >> (64 - bits);
        E::from_f64(k as f64 * (-(bits as f64)).exp2())
    }

    /// Uniform in `[lo, hi)` (`lo + (hi − lo)·u`; rounding can reach `hi` only when the
    /// interval is not representable at full precision).
    #[inline]
    pub fn uniform_range<E: Float>(&mut self, lo: E, hi: E) -> E {
        let v = lo + (hi - lo) * self.uniform::<E>();
        if v >= hi && hi > lo {
            lo
        } else {
            v
        }
    }

    /// Standard normal (mean 0, variance 1), by the Box–Muller transform.
    #[inline]
    pub fn normal<E: Float>(&mut self) -> E {
        let (z, _) = self.normal_pair();
        E::from_f64(z)
    }

    /// Two independent standard normals (Box–Muller, in f64).
    #[inline]
    pub fn normal_pair(&mut self) -> (f64, f64) {
        // u1 in (0, 1] so that ln(u1) is finite.
        let u1 = 1.0 - self.uniform::<f64>();
        let u2 = self.uniform::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (core::f64::consts::TAU * u2).sin_cos();
        (r * c, r * s)
    }

    /// Fill `out` with standard normals (both values of each Box–Muller pair are used).
    pub fn fill_normal<E: Float>(&mut self, out: &mut [E]) {
        let mut chunks = out.chunks_exact_mut(2);
        for pair in &mut chunks {
            let (a, b) = self.normal_pair();
            pair[0] = E::from_f64(a);
            pair[1] = E::from_f64(b);
        }
        if let [last] = chunks.into_remainder() {
            *last = self.normal();
        }
    }

    /// Fill `out` with uniforms in `[lo, hi)`.
    pub fn fill_uniform<E: Float>(&mut self, out: &mut [E], lo: E, hi: E) {
        for x in out {
            *x = self.uniform_range(lo, hi);
        }
    }
}
