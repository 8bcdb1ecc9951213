//! Bit-level conversions between `f32` and the 16-bit float formats, written as the same
//! branch-free integer algorithms the generated code uses (see `lower::convert`), so the Rust
//! functions are the executable specification the JIT is tested against.
//!
//! Narrowing rounds to nearest even. NaNs keep their sign and as much payload as fits, and are
//! quieted only when the kept payload would be empty (so it never turns into an infinity);
//! consequently a 16-bit pattern survives widening and narrowing unchanged, NaNs included.

/// `f32` bits of the bf16 pattern `h` (exact: bf16 is the upper half of an `f32`).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// bf16 bits of `x`, rounded to nearest even.
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        let kept = u >> 16;
        return (if kept & 0x7f == 0 { kept | 0x40 } else { kept }) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// The fp16 pattern `h` widened to `f32` (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let shifted_exp = 0x7c00u32 << 13;
    let mut o = (h & 0x7fff) << 13;
    let exp = o & shifted_exp;
    o = o.wrapping_add((127 - 15) << 23);
    if exp == shifted_exp {
        o = o.wrapping_add((128 - 16) << 23);
    } else if exp == 0 {
        o = o.wrapping_add(1 << 23);
        o = (f32::from_bits(o) - f32::from_bits(113 << 23)).to_bits();
    }
    f32::from_bits(o | ((h & 0x8000) << 16))
}

/// fp16 bits of `x`, rounded to nearest even (overflow gives an infinity).
pub fn f32_to_f16(x: f32) -> u16 {
    let u = x.to_bits();
    let sign = u & 0x8000_0000;
    let a = u ^ sign;
    let o = if a >= (127 + 16) << 23 {
        if a > 0x7f80_0000 {
            let kept = (a >> 13) & 0x3ff;
            0x7c00 | if kept == 0 { 0x200 } else { kept }
        } else {
            0x7c00
        }
    } else if a < 113 << 23 {
        let magic = ((127 - 15) + (23 - 10) + 1) << 23;
        (f32::from_bits(a) + f32::from_bits(magic)).to_bits() - magic
    } else {
        let odd = (a >> 13) & 1;
        (a.wrapping_add(((15u32.wrapping_sub(127)) << 23).wrapping_add(0xfff)) + odd) >> 13
    };
    (o | (sign >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    /// A deterministic stream of f32 bit patterns covering every exponent.
    fn patterns() -> impl Iterator<Item = u32> {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        (0..2_000_000).map(move |_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u32
        })
    }

    #[test]
    fn f16_widening_matches_half_and_roundtrips_every_pattern() {
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            let reference = f16::from_bits(h).to_f32();
            if reference.is_nan() {
                assert!(x.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(x.to_bits(), reference.to_bits(), "{h:#06x}");
            }
            assert_eq!(
                f32_to_f16(x),
                h,
                "{h:#06x} does not survive f16 -> f32 -> f16"
            );
        }
    }

    #[test]
    fn bf16_widening_roundtrips_every_pattern() {
        for h in 0..=u16::MAX {
            let x = bf16_to_f32(h);
            assert_eq!(f32_to_bf16(x), h, "{h:#06x}");
            if !x.is_nan() {
                assert_eq!(x.to_bits(), bf16::from_bits(h).to_f32().to_bits());
            }
        }
    }

    #[test]
    fn narrowing_rounds_to_nearest_even_like_half() {
        let edges = [
            0.0f32,
            -0.0,
            1.0,
            65504.0,
            65519.99,
            65520.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            5.96e-8,
            2.98e-8,
            2.9802326e-8,
            6.1e-5,
            1.0 + f32::EPSILON,
            f32::MIN_POSITIVE,
            3.4e38,
        ];
        let all = edges.iter().map(|x| x.to_bits()).chain(patterns());
        for u in all {
            let x = f32::from_bits(u);
            let (h, b) = (f32_to_f16(x), f32_to_bf16(x));
            if x.is_nan() {
                assert!(f16_to_f32(h).is_nan() && bf16_to_f32(b).is_nan(), "{u:#x}");
                assert_eq!(h >> 15, (u >> 31) as u16);
            } else {
                assert_eq!(h, f16::from_f32(x).to_bits(), "f16 of {x:e} ({u:#x})");
                assert_eq!(b, bf16::from_f32(x).to_bits(), "bf16 of {x:e} ({u:#x})");
            }
        }
    }
}
