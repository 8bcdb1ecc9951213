// cubevec AscendC CPU emulation: vector ops in count form (UB → UB, PIPE_V).
#pragma once

#include "emu_core.h"

namespace AscendC {

/// Rounding modes of Cast.
enum class RoundMode { CAST_NONE = 0, CAST_RINT, CAST_FLOOR, CAST_CEIL, CAST_ROUND, CAST_TRUNC, CAST_ODD };

namespace emu {

/// Common checks of a count-form vector operand holding `count` elements.
template <typename T>
inline void VecOperand(const char* call, const char* name, const LocalTensor<T>& t, int32_t count) {
    t.EmuIn(call, name, Hardware::UB);
    t.EmuAlign(call, name, 32);
    t.EmuNeed(call, name, static_cast<uint64_t>(count) * sizeof(T));
}

inline void VecCount(const char* call, int32_t count) {
    if (count < 0) Fail(Failure::BadParameter, call, "count %d is negative", count);
}

template <typename T>
inline void VecTypes(const char* call, bool ok) {
    if (!ok) Fail(Failure::Unsupported, call, "element type of %zu bytes is not supported by this op on arch 2201", sizeof(T));
}

template <typename T>
constexpr bool kArith = std::is_same_v<T, half> || std::is_same_v<T, float> || std::is_same_v<T, int16_t> ||
                        std::is_same_v<T, int32_t>;
template <typename T>
constexpr bool kFloat = std::is_same_v<T, half> || std::is_same_v<T, float>;

/// Rounds a double result to T (RNE; for float the double result of one IEEE op rounds correctly).
template <typename T>
inline T Result(double v) {
    return FromDouble<T>(v, Rounding::Rint);
}

/// Elementwise binary op. `f` is called with doubles for float types (then rounded to T) and with
/// int64_t for integer types (then wrapped to T like the device's lanes).
template <typename T, typename F>
inline void Binary(const char* call, const LocalTensor<T>& dst, const LocalTensor<T>& a, const LocalTensor<T>& b,
                   int32_t count, F f) {
    VecCount(call, count);
    VecOperand(call, "dst", dst, count);
    VecOperand(call, "src0", a, count);
    VecOperand(call, "src1", b, count);
    const uint64_t seq = Issue(Pipe::V);
    const uint64_t bytes = static_cast<uint64_t>(count) * sizeof(T);
    a.EmuRead(call, "src0", Pipe::V, seq, bytes);
    b.EmuRead(call, "src1", Pipe::V, seq, bytes);
    dst.EmuWrite(call, "dst", Pipe::V, seq, bytes);
    T* d = dst.GetPhyAddr();
    const T* x = a.GetPhyAddr();
    const T* y = b.GetPhyAddr();
    for (int32_t i = 0; i < count; ++i) {
        if constexpr (std::is_integral_v<T>) {
            d[i] = static_cast<T>(f(static_cast<int64_t>(x[i]), static_cast<int64_t>(y[i])));
        } else {
            d[i] = Result<T>(f(ToDouble(x[i]), ToDouble(y[i])));
        }
    }
}

/// Elementwise unary op, same conventions as Binary.
template <typename T, typename F>
inline void Unary(const char* call, const LocalTensor<T>& dst, const LocalTensor<T>& a, int32_t count, F f) {
    VecCount(call, count);
    VecOperand(call, "dst", dst, count);
    VecOperand(call, "src", a, count);
    const uint64_t seq = Issue(Pipe::V);
    a.EmuRead(call, "src", Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(T));
    dst.EmuWrite(call, "dst", Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(T));
    T* d = dst.GetPhyAddr();
    const T* x = a.GetPhyAddr();
    for (int32_t i = 0; i < count; ++i) {
        if constexpr (std::is_integral_v<T>) {
            d[i] = static_cast<T>(f(static_cast<int64_t>(x[i])));
        } else {
            d[i] = Result<T>(f(ToDouble(x[i])));
        }
    }
}

/// Converts the Cast RoundMode to the emulator's rounding, failing for pairs and modes that arch
/// 2201 rejects.
template <typename D, typename S>
inline Rounding CastRounding(RoundMode mode) {
    static const char* call = "Cast";
    const bool none = mode == RoundMode::CAST_NONE;
    const bool odd = mode == RoundMode::CAST_ODD;
    bool ok = false;
    if constexpr ((std::is_same_v<S, half> || std::is_same_v<S, bfloat16_t> || std::is_same_v<S, int16_t>) &&
                  std::is_same_v<D, float>) {
        ok = none;
    } else if constexpr ((std::is_same_v<S, int8_t> || std::is_same_v<S, uint8_t>) && std::is_same_v<D, half>) {
        ok = none;
    } else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, half>) {
        ok = true;
    } else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, bfloat16_t>) {
        ok = !none && !odd;
    } else if constexpr ((std::is_same_v<S, float> &&
                          (std::is_same_v<D, int32_t> || std::is_same_v<D, int16_t> || std::is_same_v<D, int64_t>)) ||
                         (std::is_same_v<S, half> && (std::is_same_v<D, int32_t> || std::is_same_v<D, int16_t>)) ||
                         (std::is_same_v<S, bfloat16_t> && std::is_same_v<D, int32_t>) ||
                         (std::is_same_v<S, float> && std::is_same_v<D, float>)) {
        ok = !none && !odd;
    } else if constexpr (std::is_same_v<S, half> && (std::is_same_v<D, int8_t> || std::is_same_v<D, uint8_t>)) {
        ok = !odd;
    } else if constexpr (std::is_same_v<S, int32_t> && std::is_same_v<D, float>) {
        ok = !odd;
    }
    if (!ok) {
        Fail(Failure::Unsupported, call, "cast from %zu-byte to %zu-byte element with RoundMode %d is not supported on arch 2201",
             sizeof(S), sizeof(D), static_cast<int>(mode));
    }
    switch (mode) {
        case RoundMode::CAST_NONE:
        case RoundMode::CAST_RINT: return Rounding::Rint;
        case RoundMode::CAST_FLOOR: return Rounding::Floor;
        case RoundMode::CAST_CEIL: return Rounding::Ceil;
        case RoundMode::CAST_ROUND: return Rounding::Round;
        case RoundMode::CAST_TRUNC: return Rounding::Trunc;
        case RoundMode::CAST_ODD: return Rounding::Odd;
    }
    return Rounding::Rint;
}

}  // namespace emu

#define CUBEVEC_EMU_BINARY(NAME, TYPES, EXPR)                                                         \
    template <typename T>                                                                            \
    inline void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src0, const LocalTensor<T>& src1, \
                     const int32_t& count) {                                                         \
        emu::VecTypes<T>(#NAME, TYPES);                                                              \
        emu::Binary(#NAME, dst, src0, src1, count, [](auto x, auto y) { return EXPR; });             \
    }

CUBEVEC_EMU_BINARY(Add, emu::kArith<T>, x + y)
CUBEVEC_EMU_BINARY(Sub, emu::kArith<T>, x - y)
CUBEVEC_EMU_BINARY(Mul, emu::kArith<T>, x * y)
CUBEVEC_EMU_BINARY(Div, emu::kFloat<T>, x / y)
CUBEVEC_EMU_BINARY(Max, emu::kArith<T>, (std::isnan(static_cast<double>(x)) || x > y) ? x : y)
CUBEVEC_EMU_BINARY(Min, emu::kArith<T>, (std::isnan(static_cast<double>(x)) || x < y) ? x : y)
#undef CUBEVEC_EMU_BINARY

#define CUBEVEC_EMU_SCALAR(NAME, EXPR)                                                                \
    template <typename T>                                                                            \
    inline void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src, const T& scalarValue,      \
                     const int32_t& count) {                                                         \
        emu::VecTypes<T>(#NAME, emu::kArith<T>);                                                     \
        using W = std::conditional_t<std::is_integral_v<T>, int64_t, double>;                        \
        const W y = static_cast<W>(emu::ToDouble(scalarValue));                                      \
        emu::Unary(#NAME, dst, src, count, [y](auto x) { return EXPR; });                            \
    }

CUBEVEC_EMU_SCALAR(Adds, x + y)
CUBEVEC_EMU_SCALAR(Muls, x * y)
CUBEVEC_EMU_SCALAR(Maxs, x > y ? x : y)
CUBEVEC_EMU_SCALAR(Mins, x < y ? x : y)
#undef CUBEVEC_EMU_SCALAR

#define CUBEVEC_EMU_UNARY(NAME, TYPES, EXPR)                                                          \
    template <typename T>                                                                            \
    inline void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src, const int32_t& count) {   \
        emu::VecTypes<T>(#NAME, TYPES);                                                              \
        emu::Unary(#NAME, dst, src, count, [](auto x) { return EXPR; });                             \
    }

CUBEVEC_EMU_UNARY(Exp, emu::kFloat<T>, std::exp(x))
CUBEVEC_EMU_UNARY(Ln, emu::kFloat<T>, std::log(x))
CUBEVEC_EMU_UNARY(Abs, emu::kFloat<T>, std::fabs(x))
CUBEVEC_EMU_UNARY(Sqrt, emu::kFloat<T>, std::sqrt(x))
CUBEVEC_EMU_UNARY(Rsqrt, emu::kFloat<T>, 1.0 / std::sqrt(x))
CUBEVEC_EMU_UNARY(Reciprocal, emu::kFloat<T>, 1.0 / x)
CUBEVEC_EMU_UNARY(Relu, (emu::kFloat<T> || std::is_same_v<T, int32_t>), x > 0 ? x : decltype(x)(0))
#undef CUBEVEC_EMU_UNARY

/// Fills `count` elements with `scalarValue`.
template <typename T>
inline void Duplicate(const LocalTensor<T>& dst, const T& scalarValue, const int32_t& count) {
    static const char* call = "Duplicate";
    emu::VecTypes<T>(call, sizeof(T) == 2 || sizeof(T) == 4);
    emu::VecCount(call, count);
    emu::VecOperand(call, "dst", dst, count);
    dst.EmuWrite(call, "dst", emu::Pipe::V, emu::Issue(emu::Pipe::V), static_cast<uint64_t>(count) * sizeof(T));
    T* d = dst.GetPhyAddr();
    for (int32_t i = 0; i < count; ++i) d[i] = scalarValue;
}

/// Elementwise type conversion with the given rounding mode (pairs and modes of arch 2201 only).
template <typename D, typename S>
inline void Cast(const LocalTensor<D>& dst, const LocalTensor<S>& src, const RoundMode& roundMode, const uint32_t count) {
    static const char* call = "Cast";
    const emu::Rounding mode = emu::CastRounding<D, S>(roundMode);
    const int32_t n = static_cast<int32_t>(count);
    emu::VecCount(call, n);
    emu::VecOperand(call, "dst", dst, n);
    emu::VecOperand(call, "src", src, n);
    const uint64_t seq = emu::Issue(emu::Pipe::V);
    src.EmuRead(call, "src", emu::Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(S));
    dst.EmuWrite(call, "dst", emu::Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(D));
    D* d = dst.GetPhyAddr();
    const S* s = src.GetPhyAddr();
    for (uint32_t i = 0; i < count; ++i) {
        const double v = emu::ToDouble(s[i]);
        if constexpr (std::is_same_v<D, float> && std::is_same_v<S, float>) {
            // float -> float rounds to an integral value; |v| >= 2^23 is already integral.
            if (!std::isfinite(v) || std::fabs(v) >= 8388608.0) {
                d[i] = static_cast<float>(v);
            } else {
                d[i] = std::copysign(static_cast<float>(emu::FromDouble<int64_t>(v, mode)), static_cast<float>(v));
            }
        } else {
            d[i] = emu::FromDouble<D>(v, mode);
        }
    }
}

/// dst[0] = sum of src[0, count). The scratch tensor is unused on arch 2201.
template <typename T>
inline void ReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
                      const int32_t count) {
    static const char* call = "ReduceSum";
    (void)sharedTmpBuffer;
    emu::VecTypes<T>(call, emu::kFloat<T>);
    if (count < 1 || static_cast<uint32_t>(count) * sizeof(T) > 192u * 1024u) {
        emu::Fail(emu::Failure::BadParameter, call, "count %d outside [1, UB/sizeof(T)]", count);
    }
    emu::VecOperand(call, "src", src, count);
    dst.EmuIn(call, "dst", Hardware::UB);
    dst.EmuAlign(call, "dst", sizeof(T));
    dst.EmuNeed(call, "dst", sizeof(T));
    const uint64_t seq = emu::Issue(emu::Pipe::V);
    src.EmuRead(call, "src", emu::Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(T));
    dst.EmuWrite(call, "dst", emu::Pipe::V, seq, sizeof(T));
    double acc = 0.0;
    const T* s = src.GetPhyAddr();
    for (int32_t i = 0; i < count; ++i) acc += emu::ToDouble(s[i]);
    *dst.GetPhyAddr() = emu::Result<T>(acc);
}

/// dst[0] = max of src[0, count); with calIndex dst[1] holds the first index of the max in T's bits.
template <typename T>
inline void ReduceMax(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
                      const int32_t count, bool calIndex = false) {
    static const char* call = "ReduceMax";
    emu::VecTypes<T>(call, emu::kFloat<T>);
    if (count < 1 || static_cast<uint32_t>(count) * sizeof(T) > 192u * 1024u) {
        emu::Fail(emu::Failure::BadParameter, call, "count %d outside [1, UB/sizeof(T)]", count);
    }
    emu::VecOperand(call, "src", src, count);
    dst.EmuIn(call, "dst", Hardware::UB);
    dst.EmuAlign(call, "dst", sizeof(T));
    dst.EmuNeed(call, "dst", (calIndex ? 2 : 1) * sizeof(T));
    const uint32_t perRepeat = 256 / sizeof(T);
    const uint32_t perBlock = 32 / sizeof(T);
    const uint32_t r1 = (static_cast<uint32_t>(count) + perRepeat - 1) / perRepeat;
    const uint32_t scratch = (2 * r1 + perBlock - 1) / perBlock * perBlock;
    sharedTmpBuffer.EmuIn(call, "sharedTmpBuffer", Hardware::UB);
    sharedTmpBuffer.EmuNeed(call, "sharedTmpBuffer", static_cast<uint64_t>(scratch) * sizeof(T));
    const uint64_t seq = emu::Issue(emu::Pipe::V);
    src.EmuRead(call, "src", emu::Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(T));
    sharedTmpBuffer.EmuWrite(call, "sharedTmpBuffer", emu::Pipe::V, seq, static_cast<uint64_t>(scratch) * sizeof(T));
    dst.EmuWrite(call, "dst", emu::Pipe::V, seq, (calIndex ? 2 : 1) * sizeof(T));
    const T* s = src.GetPhyAddr();
    uint32_t best = 0;
    for (int32_t i = 1; i < count; ++i) {
        if (emu::ToDouble(s[i]) > emu::ToDouble(s[best])) best = static_cast<uint32_t>(i);
    }
    dst.GetPhyAddr()[0] = s[best];
    if (calIndex) {
        T idx;
        if constexpr (sizeof(T) == 2) {
            const uint16_t bits = static_cast<uint16_t>(best);
            std::memcpy(&idx, &bits, 2);
        } else {
            std::memcpy(&idx, &best, 4);
        }
        dst.GetPhyAddr()[1] = idx;
    }
}

/// Comparison of Compare.
enum class CMPMODE : uint8_t { LT = 0, GT, EQ, LE, GE, NE };
/// Mask interpretation of Select.
enum class SELMODE : uint8_t { VSEL_CMPMASK_SPR = 0, VSEL_TENSOR_SCALAR_MODE, VSEL_TENSOR_TENSOR_MODE };

/// dst bit j (byte j/8, bit j%8, LSB first) = src0[j] OP src1[j]; count*sizeof(T) must be a
/// multiple of 256 bytes (the device ignores a partial last repeat).
template <typename T, typename U>
inline void Compare(const LocalTensor<U>& dst, const LocalTensor<T>& src0, const LocalTensor<T>& src1, CMPMODE cmpMode,
                    uint32_t count) {
    static const char* call = "Compare";
    emu::VecTypes<T>(call, emu::kFloat<T> || (std::is_same_v<T, int32_t> && cmpMode == CMPMODE::EQ));
    const int32_t n = static_cast<int32_t>(count);
    emu::VecCount(call, n);
    if ((static_cast<uint64_t>(count) * sizeof(T)) % 256 != 0) {
        emu::Fail(emu::Failure::BadLength, call, "%u elements of %zu bytes is not a whole number of 256-byte repeats (the device skips the tail)",
                  count, sizeof(T));
    }
    emu::VecOperand(call, "src0", src0, n);
    emu::VecOperand(call, "src1", src1, n);
    dst.EmuIn(call, "dst", Hardware::UB);
    dst.EmuAlign(call, "dst", 32);
    dst.EmuNeed(call, "dst", count / 8);
    const uint64_t seq = emu::Issue(emu::Pipe::V);
    src0.EmuRead(call, "src0", emu::Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(T));
    src1.EmuRead(call, "src1", emu::Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(T));
    dst.EmuWrite(call, "dst", emu::Pipe::V, seq, count / 8);
    uint8_t* bits = dst.Bytes();
    std::memset(bits, 0, count / 8);
    const T* a = src0.GetPhyAddr();
    const T* b = src1.GetPhyAddr();
    for (uint32_t j = 0; j < count; ++j) {
        const double x = emu::ToDouble(a[j]);
        const double y = emu::ToDouble(b[j]);
        bool r = false;
        switch (cmpMode) {
            case CMPMODE::LT: r = x < y; break;
            case CMPMODE::GT: r = x > y; break;
            case CMPMODE::EQ: r = x == y; break;
            case CMPMODE::LE: r = x <= y; break;
            case CMPMODE::GE: r = x >= y; break;
            case CMPMODE::NE: r = x != y; break;
        }
        if (r) bits[j / 8] = static_cast<uint8_t>(bits[j / 8] | (1u << (j % 8)));
    }
}

namespace emu {
/// Shared body of the Select forms; `pick1(i)` yields the src1 value of element i.
template <typename T, typename U, typename F>
inline void SelectImpl(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0,
                       const LocalTensor<T>* src1, SELMODE mode, uint32_t count, F pick1) {
    static const char* call = "Select";
    VecTypes<T>(call, kFloat<T>);
    const int32_t n = static_cast<int32_t>(count);
    VecCount(call, n);
    VecOperand(call, "dst", dst, n);
    VecOperand(call, "src0", src0, n);
    selMask.EmuIn(call, "selMask", Hardware::UB);
    selMask.EmuAlign(call, "selMask", 32);
    const uint32_t perRepeat = 256 / sizeof(T);
    const uint32_t maskBits = mode == SELMODE::VSEL_CMPMASK_SPR ? (count < perRepeat ? count : perRepeat) : count;
    selMask.EmuNeed(call, "selMask", (maskBits + 7) / 8);
    if (mode == SELMODE::VSEL_TENSOR_TENSOR_MODE) {
        TPipe* pipe = GetTPipePtr();
        if (pipe != nullptr && pipe->EmuUsed(Hardware::UB) > 184u * 1024u) {
            Fail(Failure::BadParameter, call, "tensor-tensor mode writes a temporary at UB offset 184 KiB, but the TPipe uses %u bytes of UB",
                 pipe->EmuUsed(Hardware::UB));
        }
    }
    const uint64_t seq = Issue(Pipe::V);
    selMask.EmuRead(call, "selMask", Pipe::V, seq, (maskBits + 7) / 8);
    src0.EmuRead(call, "src0", Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(T));
    if (src1 != nullptr) src1->EmuRead(call, "src1", Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(T));
    dst.EmuWrite(call, "dst", Pipe::V, seq, static_cast<uint64_t>(count) * sizeof(T));
    const uint8_t* bits = selMask.Bytes();
    const T* a = src0.GetPhyAddr();
    T* d = dst.GetPhyAddr();
    for (uint32_t i = 0; i < count; ++i) {
        const uint32_t bit = mode == SELMODE::VSEL_CMPMASK_SPR ? i % perRepeat : i;
        d[i] = ((bits[bit / 8] >> (bit % 8)) & 1u) ? a[i] : pick1(i);
    }
}
}  // namespace emu

/// dst[i] = mask bit i ? src0[i] : src1[i] (mode 2; mode 0 reuses the first repeat's bits).
template <typename T, typename U>
inline void Select(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0,
                   const LocalTensor<T>& src1, SELMODE selMode, uint32_t count) {
    if (selMode == SELMODE::VSEL_TENSOR_SCALAR_MODE) {
        emu::Fail(emu::Failure::BadParameter, "Select", "VSEL_TENSOR_SCALAR_MODE needs a scalar src1");
    }
    emu::VecOperand("Select", "src1", src1, static_cast<int32_t>(count));
    const T* b = src1.GetPhyAddr();
    emu::SelectImpl(dst, selMask, src0, &src1, selMode, count, [b](uint32_t i) { return b[i]; });
}

/// dst[i] = mask bit i ? src0[i] : scalar (VSEL_TENSOR_SCALAR_MODE).
template <typename T, typename U>
inline void Select(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0, T src1,
                   SELMODE selMode, uint32_t count) {
    if (selMode != SELMODE::VSEL_TENSOR_SCALAR_MODE) {
        emu::Fail(emu::Failure::BadParameter, "Select", "a scalar src1 needs VSEL_TENSOR_SCALAR_MODE");
    }
    emu::SelectImpl(dst, selMask, src0, static_cast<const LocalTensor<T>*>(nullptr), selMode, count,
                    [src1](uint32_t) { return src1; });
}

}  // namespace AscendC
