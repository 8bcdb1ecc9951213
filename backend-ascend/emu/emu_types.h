// cubevec AscendC CPU emulation: failure reporting, qualifier macros, half / bfloat16_t and rounding.
//
// Part of the header-only emulation of the AscendC API subset emitted by cubevec. Include
// "kernel_operator.h", never this file directly.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

// Device qualifiers are meaningless on the CPU.
#define __gm__
#define __aicore__
#define __global__
#define __inline__ inline
#define GM_ADDR __gm__ uint8_t*
#define KERNEL_TASK_TYPE_DEFAULT(type)

namespace AscendC {
namespace emu {

/// Exit codes of the emulator's checks; each class of violation has its own code.
enum class Failure : int {
    BufferOverflow = 81,   ///< access beyond a tensor / pool / GM allocation
    Misaligned = 82,       ///< address not aligned as the API requires
    BadLength = 83,        ///< length not a multiple of the required unit
    QueueMisuse = 84,      ///< TQue state machine violated, tensor not freed
    UnpairedFlag = 85,     ///< SetFlag/WaitFlag pairing violated
    TooManyBuffers = 86,   ///< more than 64 buffers in one TPipe, num outside [1,64]
    BadParameter = 87,     ///< parameter out of its documented range
    WrongPosition = 88,    ///< operand in a TPosition the API does not accept
    Unsupported = 89,      ///< dtype/mode not supported on arch 2201 or by the emulator
    CrossCore = 90,        ///< cross-core flag misuse or deadlock
    Unsynchronized = 91,   ///< cross-pipe data hazard with no flag, queue event or barrier
};

/// What the current thread is running, for failure messages: `kernel <name>, <core> <index>`
/// while a named launch runs on it (set by `Launch`), empty otherwise.
inline thread_local char tlsFailContext[192] = {0};

/// Prints `ascendc-emu: <call>: <message>` to stderr (preceded by `ascendc-emu: in <context>` when
/// a named kernel is running) and terminates the process with `code`.
[[noreturn]] inline void Fail(Failure code, const char* call, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

[[noreturn]] inline void Fail(Failure code, const char* call, const char* fmt, ...) {
    if (tlsFailContext[0] != 0) std::fprintf(stderr, "ascendc-emu: in %s\n", tlsFailContext);
    std::fprintf(stderr, "ascendc-emu: %s: ", call);
    va_list args;
    va_start(args, fmt);
    std::vfprintf(stderr, fmt, args);
    va_end(args);
    std::fprintf(stderr, "\n");
    std::fflush(stderr);
    std::fflush(stdout);
    std::_Exit(static_cast<int>(code));
}

/// Round-to-integer modes shared by Cast and the small-float encoders.
enum class Rounding { Rint, Floor, Ceil, Round, Trunc, Odd };

/// Rounds the finite double `x` to a binary float with `mbits` stored mantissa bits and `ebits`
/// exponent bits (IEEE layout, subnormals included), returning the rounded value as a double.
/// Overflow gives ±inf except for the modes that round towards zero at the top of the range.
inline double RoundToFormat(double x, int mbits, int ebits, Rounding mode) {
    if (std::isnan(x) || std::isinf(x) || x == 0.0) return x;
    const int bias = (1 << (ebits - 1)) - 1;
    const int emin = 1 - bias;
    const double maxFinite = std::ldexp(2.0 - std::ldexp(1.0, -mbits), bias);
    const bool neg = x < 0;
    const double a = std::fabs(x);
    int ex = 0;
    std::frexp(a, &ex);
    int e = ex - 1;
    if (e < emin) e = emin;
    const double q = std::ldexp(1.0, e - mbits);
    const double mlo = std::floor(a / q);
    const double lo = mlo * q;
    const double hi = lo + q;
    double r = lo;
    if (lo != a) {
        const double dlo = a - lo;
        const double dhi = hi - a;
        switch (mode) {
            case Rounding::Rint:
                r = dlo < dhi ? lo : (dhi < dlo ? hi : (std::fmod(mlo, 2.0) == 0.0 ? lo : hi));
                break;
            case Rounding::Round: r = dlo < dhi ? lo : hi; break;
            case Rounding::Trunc: r = lo; break;
            case Rounding::Floor: r = neg ? hi : lo; break;
            case Rounding::Ceil: r = neg ? lo : hi; break;
            case Rounding::Odd: r = std::fmod(mlo, 2.0) != 0.0 ? lo : hi; break;
        }
    }
    if (r > maxFinite) r = std::numeric_limits<double>::infinity();
    return neg ? -r : r;
}

/// Encodes a double that is exactly representable in the (mbits, ebits) format into its bits.
inline uint32_t EncodeFormat(double r, int mbits, int ebits) {
    const int bias = (1 << (ebits - 1)) - 1;
    const uint32_t sign = std::signbit(r) ? (1u << (mbits + ebits)) : 0u;
    const uint32_t expMask = (1u << ebits) - 1;
    if (std::isnan(r)) return sign | (expMask << mbits) | (1u << (mbits - 1));
    const double a = std::fabs(r);
    if (std::isinf(a)) return sign | (expMask << mbits);
    if (a == 0.0) return sign;
    int ex = 0;
    std::frexp(a, &ex);
    const int e = ex - 1;
    if (e < 1 - bias) {
        return sign | static_cast<uint32_t>(std::ldexp(a, bias - 1 + mbits));
    }
    const uint32_t mant = static_cast<uint32_t>(std::ldexp(std::ldexp(a, -e) - 1.0, mbits));
    return sign | (static_cast<uint32_t>(e + bias) << mbits) | mant;
}

/// Decodes (mbits, ebits) format bits into a double.
inline double DecodeFormat(uint32_t bits, int mbits, int ebits) {
    const int bias = (1 << (ebits - 1)) - 1;
    const bool neg = (bits >> (mbits + ebits)) & 1u;
    const uint32_t expField = (bits >> mbits) & ((1u << ebits) - 1);
    const uint32_t mant = bits & ((1u << mbits) - 1);
    double v;
    if (expField == (1u << ebits) - 1) {
        v = mant ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
    } else if (expField == 0) {
        v = std::ldexp(static_cast<double>(mant), 1 - bias - mbits);
    } else {
        v = std::ldexp(1.0 + std::ldexp(static_cast<double>(mant), -mbits),
                       static_cast<int>(expField) - bias);
    }
    return neg ? -v : v;
}

}  // namespace emu
}  // namespace AscendC

/// IEEE binary16. Conversions from float round to nearest, ties to even.
struct half {
    uint16_t bits = 0;
    half() = default;
    half(float v) : bits(FromDouble(v)) {}  // NOLINT: implicit like the device type
    half(double v) : bits(FromDouble(v)) {}  // NOLINT
    half(int v) : bits(FromDouble(v)) {}     // NOLINT
    operator float() const {  // NOLINT
        return static_cast<float>(AscendC::emu::DecodeFormat(bits, 10, 5));
    }
    static half FromBits(uint16_t b) {
        half h;
        h.bits = b;
        return h;
    }
    static uint16_t FromDouble(double v) {
        using namespace AscendC::emu;
        return static_cast<uint16_t>(EncodeFormat(RoundToFormat(v, 10, 5, Rounding::Rint), 10, 5));
    }
};

/// bfloat16. Conversions from float round to nearest, ties to even.
struct bfloat16_t {
    uint16_t bits = 0;
    bfloat16_t() = default;
    bfloat16_t(float v) : bits(FromDouble(v)) {}   // NOLINT
    bfloat16_t(double v) : bits(FromDouble(v)) {}  // NOLINT
    bfloat16_t(int v) : bits(FromDouble(v)) {}     // NOLINT
    operator float() const {  // NOLINT
        uint32_t w = static_cast<uint32_t>(bits) << 16;
        float f;
        std::memcpy(&f, &w, sizeof f);
        return f;
    }
    static bfloat16_t FromBits(uint16_t b) {
        bfloat16_t h;
        h.bits = b;
        return h;
    }
    static uint16_t FromDouble(double v) {
        using namespace AscendC::emu;
        return static_cast<uint16_t>(EncodeFormat(RoundToFormat(v, 7, 8, Rounding::Rint), 7, 8));
    }
};

namespace AscendC {
namespace emu {

/// True for the emulated 16-bit float types.
template <typename T>
constexpr bool kIsSmallFloat = std::is_same_v<T, half> || std::is_same_v<T, bfloat16_t>;

/// Element value as double (exact for every supported type).
template <typename T>
inline double ToDouble(T v) {
    if constexpr (kIsSmallFloat<T>) {
        return static_cast<double>(static_cast<float>(v));
    } else {
        return static_cast<double>(v);
    }
}

/// Converts a double to T with the given rounding (floats: format rounding; integers: rounding
/// to integral then saturation, NaN → 0).
template <typename T>
inline T FromDouble(double v, Rounding mode) {
    if constexpr (std::is_same_v<T, half>) {
        return half::FromBits(static_cast<uint16_t>(EncodeFormat(RoundToFormat(v, 10, 5, mode), 10, 5)));
    } else if constexpr (std::is_same_v<T, bfloat16_t>) {
        return bfloat16_t::FromBits(static_cast<uint16_t>(EncodeFormat(RoundToFormat(v, 7, 8, mode), 7, 8)));
    } else if constexpr (std::is_same_v<T, float>) {
        return static_cast<float>(RoundToFormat(v, 23, 8, mode));
    } else if constexpr (std::is_same_v<T, double>) {
        return v;
    } else {
        static_assert(std::is_integral_v<T>, "unsupported element type");
        if (std::isnan(v)) return T(0);
        double r = v;
        switch (mode) {
            case Rounding::Rint: r = std::nearbyint(v); break;
            case Rounding::Floor: r = std::floor(v); break;
            case Rounding::Ceil: r = std::ceil(v); break;
            case Rounding::Round: r = std::round(v); break;
            case Rounding::Trunc:
            case Rounding::Odd: r = std::trunc(v); break;
        }
        const double lo = static_cast<double>(std::numeric_limits<T>::min());
        const double hi = static_cast<double>(std::numeric_limits<T>::max());
        if (r <= lo) return std::numeric_limits<T>::min();
        if (r >= hi) return std::numeric_limits<T>::max();
        return static_cast<T>(r);
    }
}

}  // namespace emu
}  // namespace AscendC
