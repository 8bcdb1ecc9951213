//! Element addresses of the on-chip layouts (and of GM matrices).
//!
//! Every layout of the kernel IR is separable: the element offset of logical `(row, col)` is
//! `rows.part(row) + cols.part(col)`, each part of the form `(i >> shift) * hi + (i & mask) * lo`
//! with power-of-two fractal sides. The generated code evaluates exactly these parts, so a
//! buffer holds its real Ascend layout at its planned byte offset.

use cubevec_ir::kernel::{Buffer, Layout, fractal_cols};

/// One coordinate's contribution to an element offset: `(i >> shift) * hi + (i & (2^shift - 1)) * lo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// log2 of the fractal side along this coordinate (0 when the coordinate is not split).
    pub shift: u32,
    /// Elements between consecutive fractals along this coordinate.
    pub hi: i64,
    /// Elements between consecutive indices inside a fractal.
    pub lo: i64,
}

impl Part {
    /// A plain stride: `i * stride`.
    pub fn linear(stride: i64) -> Part {
        Part {
            shift: 0,
            hi: stride,
            lo: 0,
        }
    }

    /// The offset contributed by index `i` (what the generated code computes).
    #[cfg(test)]
    pub fn at(&self, i: i64) -> i64 {
        let mask = (1i64 << self.shift) - 1;
        (i >> self.shift) * self.hi + (i & mask) * self.lo
    }
}

/// The address function of a `rows × cols` matrix in one layout, in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addressing {
    /// Contribution of the row.
    pub rows: Part,
    /// Contribution of the column.
    pub cols: Part,
}

impl Addressing {
    /// A row-major matrix with `pitch` elements per row.
    pub fn nd(pitch: u64) -> Addressing {
        Addressing {
            rows: Part::linear(pitch as i64),
            cols: Part::linear(1),
        }
    }

    /// The layout of one stage of `buf`.
    pub fn of(buf: &Buffer) -> Addressing {
        let (rows, cols) = (buf.rows as i64, buf.cols as i64);
        // L0B fractals hold c0 rows (K) by 16 columns (N); every other fractal is 16 × fc.
        let fc = fractal_cols(buf.level, buf.dtype) as i64;
        let log = |v: i64| v.trailing_zeros();
        match buf.layout {
            Layout::Nd => Addressing::nd(buf.cols),
            // Fractals column-major, each row-major: (c / fc) * rows * fc + r * fc + c % fc.
            Layout::Nz => Addressing {
                rows: Part::linear(fc),
                cols: Part {
                    shift: log(fc),
                    hi: rows * fc,
                    lo: 1,
                },
            },
            // Fractals row-major, each row-major.
            Layout::Zz => Addressing {
                rows: Part {
                    shift: 4,
                    hi: 16 * cols,
                    lo: fc,
                },
                cols: Part {
                    shift: log(fc),
                    hi: 16 * fc,
                    lo: 1,
                },
            },
            // Fractals (fc rows × 16 columns) row-major, each column-major.
            Layout::Zn => Addressing {
                rows: Part {
                    shift: log(fc),
                    hi: cols * fc,
                    lo: 1,
                },
                cols: Part {
                    shift: 4,
                    hi: 16 * fc,
                    lo: fc,
                },
            },
        }
    }

    /// The element offset of `(row, col)`.
    #[cfg(test)]
    pub fn at(&self, row: i64, col: i64) -> i64 {
        self.rows.at(row) + self.cols.at(col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cubevec_ir::DType;
    use cubevec_ir::kernel::MemLevel;
    use std::collections::BTreeSet;

    fn buf(level: MemLevel, layout: Layout, dtype: DType, rows: u64, cols: u64) -> Buffer {
        Buffer {
            name: "b".into(),
            level,
            dtype,
            layout,
            rows,
            cols,
            stages: 1,
            offset: 0,
        }
    }

    /// Every element gets a distinct offset inside the stage.
    fn assert_bijective(a: &Addressing, rows: i64, cols: i64) {
        let mut seen = BTreeSet::new();
        for r in 0..rows {
            for c in 0..cols {
                let o = a.at(r, c);
                assert!((0..rows * cols).contains(&o), "({r}, {c}) -> {o}");
                assert!(seen.insert(o), "({r}, {c}) -> {o} twice");
            }
        }
    }

    #[test]
    fn l1_nz_is_column_major_fractals_of_32_bytes() {
        let a = Addressing::of(&buf(MemLevel::L1, Layout::Nz, DType::F16, 32, 48));
        // Fractal (1, 2) starts after two fractal columns of two fractals each.
        assert_eq!(a.at(16, 32), (2 * 2 + 1) * 256);
        assert_eq!(a.at(17, 35), (2 * 2 + 1) * 256 + 16 + 3);
        assert_eq!(a.at(3, 15), 3 * 16 + 15);
        let f = Addressing::of(&buf(MemLevel::L1, Layout::Nz, DType::F32, 32, 16));
        assert_eq!(f.at(0, 8), 32 * 8);
        assert_bijective(&a, 32, 48);
        assert_bijective(&f, 32, 16);
    }

    #[test]
    fn l0a_zz_is_row_major_fractals() {
        let a = Addressing::of(&buf(MemLevel::L0A, Layout::Zz, DType::F16, 32, 48));
        assert_eq!(a.at(0, 16), 256);
        assert_eq!(a.at(16, 0), 3 * 256);
        assert_eq!(a.at(18, 37), (3 + 2) * 256 + 2 * 16 + 5);
        let i8 = Addressing::of(&buf(MemLevel::L0A, Layout::Zz, DType::I8, 16, 64));
        assert_eq!(i8.at(1, 33), 512 + 32 + 1);
        assert_bijective(&a, 32, 48);
        assert_bijective(&i8, 16, 64);
    }

    #[test]
    fn l0b_zn_is_row_major_fractals_column_major_inside() {
        // k × n = 32 × 48 in f16: fractals of 16 (k) × 16 (n).
        let a = Addressing::of(&buf(MemLevel::L0B, Layout::Zn, DType::F16, 32, 48));
        assert_eq!(a.at(1, 0), 1);
        assert_eq!(a.at(0, 1), 16);
        assert_eq!(a.at(0, 16), 256);
        assert_eq!(a.at(16, 0), 3 * 256);
        // f32: fractals of 8 (k) × 16 (n).
        let f = Addressing::of(&buf(MemLevel::L0B, Layout::Zn, DType::F32, 16, 32));
        assert_eq!(f.at(9, 17), (2 + 1) * 128 + 8 + 1);
        assert_bijective(&a, 32, 48);
        assert_bijective(&f, 16, 32);
    }

    #[test]
    fn l0c_nz_uses_16_by_16_fractals_and_nd_is_row_major() {
        let a = Addressing::of(&buf(MemLevel::L0C, Layout::Nz, DType::F32, 48, 32));
        assert_eq!(a.at(1, 0), 16);
        assert_eq!(a.at(0, 16), 48 * 16);
        assert_eq!(a.at(47, 31), 48 * 16 + 47 * 16 + 15);
        assert_bijective(&a, 48, 32);
        let nd = Addressing::of(&buf(MemLevel::Ub, Layout::Nd, DType::F32, 3, 40));
        assert_eq!(nd.at(2, 5), 85);
    }
}
