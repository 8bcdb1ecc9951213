//! Element types of tensors and the conversions between them and `f32`.
//!
//! Arithmetic in cubevec happens in `f32` (reductions in `f64`); a value of a narrower float type is
//! widened when it is read and rounded (round-to-nearest-even) when it is stored, which is what the
//! Ascend vector unit and the Cube's fixpipe do.

use std::fmt;
use std::str::FromStr;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16: the upper half of an `f32`.
    BF16,
    /// FP8 E4M3 without infinities (`FN`): max 448, one NaN encoding per sign.
    F8E4M3FN,
    /// FP8 E5M2: IEEE-like, with infinities, max 57344.
    F8E5M2,
    /// UE8M0: an unsigned power-of-two scale, `2^(bits - 127)`; 0xFF is NaN.
    E8M0,
    /// FP4 E2M1, stored two per byte (low nibble first); values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}.
    F4E2M1,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Boolean, one byte per element (0 or 1).
    Bool,
}

impl DType {
    /// Every dtype, in declaration order.
    pub const ALL: [DType; 12] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::F8E4M3FN,
        DType::F8E5M2,
        DType::E8M0,
        DType::F4E2M1,
        DType::I8,
        DType::U8,
        DType::I32,
        DType::I64,
        DType::Bool,
    ];

    /// The name used in the textual IR (`f32`, `bf16`, `f8e4m3fn`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F8E4M3FN => "f8e4m3fn",
            DType::F8E5M2 => "f8e5m2",
            DType::E8M0 => "e8m0",
            DType::F4E2M1 => "f4e2m1",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    /// Storage size of one element in bits (4 for the packed FP4 type).
    pub fn bits(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 32,
            DType::F16 | DType::BF16 => 16,
            DType::F8E4M3FN | DType::F8E5M2 | DType::E8M0 | DType::I8 | DType::U8 | DType::Bool => {
                8
            }
            DType::F4E2M1 => 4,
            DType::I64 => 64,
        }
    }

    /// Bytes needed to store `count` elements (packed types round up to whole bytes).
    pub fn storage_bytes(self, count: usize) -> usize {
        (count * self.bits()).div_ceil(8)
    }

    /// Whether values of this type are floating point (including the scale type `e8m0`).
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::F32
                | DType::F16
                | DType::BF16
                | DType::F8E4M3FN
                | DType::F8E5M2
                | DType::E8M0
                | DType::F4E2M1
        )
    }

    /// Whether values of this type are integers (not `bool`).
    pub fn is_int(self) -> bool {
        matches!(self, DType::I8 | DType::U8 | DType::I32 | DType::I64)
    }

    /// Whether this is one of the sub-16-bit float formats that only appear as quantised storage.
    pub fn is_low_precision_float(self) -> bool {
        matches!(
            self,
            DType::F8E4M3FN | DType::F8E5M2 | DType::E8M0 | DType::F4E2M1
        )
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a dtype name that is not one of [`DType::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype `{0}`")]
pub struct UnknownDType(pub String);

impl FromStr for DType {
    type Err = UnknownDType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDType(s.to_string()))
    }
}

/// Decodes one UE8M0 scale byte: `2^(bits - 127)`, NaN for 0xFF.
pub fn e8m0_to_f32(bits: u8) -> f32 {
    if bits == 0xFF {
        f32::NAN
    } else {
        // 2^(bits-127): build the f32 directly; bits = 0 gives 2^-127, a subnormal.
        if bits == 0 {
            f32::from_bits(0x0040_0000)
        } else {
            f32::from_bits((bits as u32) << 23)
        }
    }
}

/// Encodes a positive scale as UE8M0 by rounding its exponent to nearest (ties up, as ONNX's
/// `Cast` to FLOAT8E8M0 with `round_mode="up"` is not used: this is the saturating round-to-nearest
/// on the exponent). Non-positive and NaN inputs give NaN (0xFF); out of range saturates.
pub fn f32_to_e8m0(value: f32) -> u8 {
    if value.is_nan() || value <= 0.0 {
        return 0xFF;
    }
    if value.is_infinite() {
        return 0xFE;
    }
    let bits = value.to_bits();
    let exponent = (bits >> 23) & 0xFF;
    let mantissa = bits & 0x7F_FFFF;
    if exponent == 0 {
        // Subnormal f32: the largest is just under 2^-126; round to 2^-127 (code 0) or 2^-126 (code 1).
        return if mantissa >= 0x0060_0000 { 1 } else { 0 };
    }
    // Round the mantissa: >= 1.5 rounds the exponent up.
    let rounded = if mantissa >= 0x0040_0000 {
        exponent + 1
    } else {
        exponent
    };
    rounded.min(0xFE) as u8
}

/// The 8 magnitudes of FP4 E2M1, indexed by the low three bits of a code.
const F4E2M1_MAGNITUDES: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// Decodes one FP4 E2M1 code (the low nibble of `code`).
pub fn f4e2m1_to_f32(code: u8) -> f32 {
    let magnitude = F4E2M1_MAGNITUDES[(code & 0x7) as usize];
    if code & 0x8 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Encodes an `f32` as FP4 E2M1 with round-to-nearest-even, saturating to ±6; NaN encodes as +6
/// like ONNX's saturating cast does for out-of-range values (FP4 has no NaN).
pub fn f32_to_f4e2m1(value: f32) -> u8 {
    let sign = if value.is_sign_negative() { 0x8 } else { 0 };
    if value.is_nan() {
        return 0x7;
    }
    let magnitude = value.abs();
    // Midpoints between neighbouring magnitudes; ties go to the code with an even mantissa bit.
    let mut best = 0u8;
    for code in 1..8u8 {
        let lower = F4E2M1_MAGNITUDES[code as usize - 1];
        let upper = F4E2M1_MAGNITUDES[code as usize];
        let mid = (lower + upper) / 2.0;
        if magnitude > mid || (magnitude == mid && code % 2 == 0) {
            best = code;
        }
    }
    sign | best
}

/// Decodes one FP8 E4M3FN byte.
pub fn f8e4m3fn_to_f32(bits: u8) -> f32 {
    float8::F8E4M3::from_bits(bits).to_f32()
}

/// Encodes an `f32` as FP8 E4M3FN, round-to-nearest-even, saturating to ±448 (NaN stays NaN).
pub fn f32_to_f8e4m3fn(value: f32) -> u8 {
    float8::F8E4M3::from_f32(value).to_bits()
}

/// Decodes one FP8 E5M2 byte.
pub fn f8e5m2_to_f32(bits: u8) -> f32 {
    float8::F8E5M2::from_bits(bits).to_f32()
}

/// Encodes an `f32` as FP8 E5M2, round-to-nearest-even, saturating to ±57344 like ONNX `Cast`
/// with `saturate=1` (±inf saturate too; NaN stays NaN).
pub fn f32_to_f8e5m2(value: f32) -> u8 {
    float8::F8E5M2::from_f32(value).to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        assert!("f64".parse::<DType>().is_err());
    }

    #[test]
    fn fp4_codes_decode_and_round() {
        assert_eq!(f4e2m1_to_f32(0x7), 6.0);
        assert_eq!(f4e2m1_to_f32(0xF), -6.0);
        assert_eq!(f32_to_f4e2m1(2.5), 0x4); // tie between 2 (m=0) and 3 (m=1): even → 2
        assert_eq!(f32_to_f4e2m1(1.25), 0x2); // tie between 1 and 1.5 → 1
        assert_eq!(f32_to_f4e2m1(100.0), 0x7);
        assert_eq!(f32_to_f4e2m1(-0.3), 0x9); // -0.5
    }

    #[test]
    fn e8m0_is_a_power_of_two() {
        assert_eq!(e8m0_to_f32(127), 1.0);
        assert_eq!(e8m0_to_f32(130), 8.0);
        assert!(e8m0_to_f32(255).is_nan());
        assert_eq!(f32_to_e8m0(8.0), 130);
        assert_eq!(f32_to_e8m0(11.0), 130);
        assert_eq!(f32_to_e8m0(13.0), 131);
    }

    #[test]
    fn fp8_saturates() {
        assert_eq!(f8e4m3fn_to_f32(f32_to_f8e4m3fn(1000.0)), 448.0);
        assert_eq!(f8e5m2_to_f32(f32_to_f8e5m2(1.0e6)), 57344.0);
        assert_eq!(f8e5m2_to_f32(f32_to_f8e5m2(f32::NEG_INFINITY)), -57344.0);
        assert_eq!(f8e4m3fn_to_f32(f32_to_f8e4m3fn(0.3)), 0.3125);
    }
}
