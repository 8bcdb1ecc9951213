// Vector ops, DataCopyPad and strided DataCopy on one AIV, against plain C++ references:
// unaligned loads with padding, elementwise math, reductions and unaligned / strided stores.
#include <cmath>
#include <cstdio>

#include "kernel_operator.h"
using namespace AscendC;

constexpr uint32_t LEN = 37;     // not a multiple of 8 floats
constexpr uint32_t SLOT = 64;    // UB slot per result, floats
constexpr uint32_t NRES = 10;    // elementwise results
constexpr uint32_t OUT_SCALARS = NRES * LEN;           // start of the scalar results in GM
constexpr uint32_t OUT_ROWS = OUT_SCALARS + 16;        // padded 3x8 rows
constexpr uint32_t OUT_STRIDED = OUT_ROWS + 24;        // strided DataCopy target (3 blocks of 8)
constexpr uint32_t OUT_TOTAL = OUT_STRIDED + 24;

extern "C" __global__ __aicore__ void vector_ops(GM_ADDR x, GM_ADDR y, GM_ADDR out, GM_ADDR workspace, GM_ADDR tiling) {
    (void)workspace;
    (void)tiling;
    GlobalTensor<float> xGm, yGm, oGm;
    xGm.SetGlobalBuffer((__gm__ float*)x, LEN);
    yGm.SetGlobalBuffer((__gm__ float*)y, LEN);
    oGm.SetGlobalBuffer((__gm__ float*)out, OUT_TOTAL);
    TPipe pipe;
    TQue<TPosition::VECIN, 1> inQ;
    TQue<TPosition::VECOUT, 1> outQ;
    TBuf<TPosition::VECCALC> tmp;
    pipe.InitBuffer(inQ, 1, 3 * SLOT * sizeof(float));
    pipe.InitBuffer(outQ, 1, (NRES + 2) * SLOT * sizeof(float));
    pipe.InitBuffer(tmp, SLOT * sizeof(float));

    LocalTensor<float> in = inQ.AllocTensor<float>();
    DataCopyPad(in, xGm, DataCopyExtParams(1, LEN * sizeof(float), 0, 0, 0),
                DataCopyPadExtParams<float>(true, 0, 3, 0.0f));
    DataCopyPad(in[SLOT], yGm, DataCopyExtParams(1, LEN * sizeof(float), 0, 0, 0),
                DataCopyPadExtParams<float>(true, 0, 3, 0.0f));
    // Three rows of 5 floats with a GM pitch of 7 floats (gap 8 bytes), left pad 1 with -1.
    DataCopyPad(in[2 * SLOT], xGm, DataCopyExtParams(3, 5 * sizeof(float), 2 * sizeof(float), 0, 0),
                DataCopyPadExtParams<float>(true, 1, 0, -1.0f));
    inQ.EnQue(in);
    in = inQ.DeQue<float>();
    LocalTensor<float> xs = in;
    LocalTensor<float> ys = in[SLOT];

    LocalTensor<float> o = outQ.AllocTensor<float>();
    Add(o[0 * SLOT], xs, ys, LEN);
    Sub(o[1 * SLOT], xs, ys, LEN);
    Mul(o[2 * SLOT], xs, ys, LEN);
    Div(o[3 * SLOT], xs, ys, LEN);
    Max(o[4 * SLOT], xs, ys, LEN);
    Exp(o[5 * SLOT], xs, LEN);
    Abs(o[6 * SLOT], xs, LEN);
    Adds(o[6 * SLOT], o[6 * SLOT], 1.0f, LEN);
    Ln(o[6 * SLOT], o[6 * SLOT], LEN);
    Relu(o[7 * SLOT], xs, LEN);
    Sqrt(o[8 * SLOT], o[7 * SLOT], LEN);
    Muls(o[9 * SLOT], ys, 0.5f, LEN);
    Reciprocal(o[9 * SLOT], o[9 * SLOT], LEN);
    LocalTensor<float> scalars = o[NRES * SLOT];
    LocalTensor<float> work = tmp.Get<float>();
    ReduceSum(scalars, xs, work, LEN);
    ReduceMax(scalars[2], xs, work, LEN, true);
    Duplicate(scalars[8], 2.0f, 4);
    Rsqrt(scalars[8], scalars[8], 4);
    LocalTensor<float> rows = o[(NRES + 1) * SLOT];
    Duplicate(rows, 0.0f, 24);
    Add(rows, rows, in[2 * SLOT], 24);
    outQ.EnQue(o);
    inQ.FreeTensor(in);

    o = outQ.DeQue<float>();
    // Unaligned stores: one chunk of LEN floats per result, UB gap (SLOT - 40 floats) / 8 blocks.
    DataCopyPad(oGm, o, DataCopyExtParams(NRES, LEN * sizeof(float), (SLOT - 40) / 8, 0, 0));
    DataCopy(oGm[OUT_SCALARS], o[NRES * SLOT], 16);
    DataCopy(oGm[OUT_ROWS], o[(NRES + 1) * SLOT], 24);
    // Strided: 2 chunks of 1 block from consecutive UB blocks to GM with a 1-block gap.
    DataCopy(oGm[OUT_STRIDED], o[(NRES + 1) * SLOT], DataCopyParams(2, 1, 0, 1));
    outQ.FreeTensor(o);
}

int main() {
    float xs[LEN], ys[LEN];
    for (uint32_t i = 0; i < LEN; ++i) {
        xs[i] = static_cast<float>(static_cast<int>(i * 29 % 41) - 20) / 7.0f;
        ys[i] = static_cast<float>(static_cast<int>(i * 13 % 23) + 1) / 3.0f;
    }
    xs[11] = 9.5f;  // unique maximum
    uint8_t* x = emu::GmAlloc(sizeof xs);
    uint8_t* y = emu::GmAlloc(sizeof ys);
    uint8_t* out = emu::GmAlloc(OUT_TOTAL * sizeof(float));
    std::memcpy(x, xs, sizeof xs);
    std::memcpy(y, ys, sizeof ys);
    float* o = reinterpret_cast<float*>(out);
    for (uint32_t i = 0; i < OUT_TOTAL; ++i) o[i] = 777.0f;
    emu::Launch(emu::KernelType::AIV_ONLY, 1, vector_ops, x, y, out, (GM_ADDR) nullptr, (GM_ADDR) nullptr);

    int bad = 0;
    auto check = [&bad](const char* what, uint32_t i, float got, float want, float relTol) {
        const bool ok = (std::isnan(want) && std::isnan(got)) ||
                        std::fabs(got - want) <= relTol * std::fmax(1.0f, std::fabs(want));
        if (!ok && bad++ < 10) std::printf("%s[%u]: got %.9g want %.9g\n", what, i, got, want);
    };
    float sum = 0.0f;
    for (uint32_t i = 0; i < LEN; ++i) {
        const float a = xs[i], b = ys[i];
        check("Add", i, o[0 * LEN + i], a + b, 0);
        check("Sub", i, o[1 * LEN + i], a - b, 0);
        check("Mul", i, o[2 * LEN + i], a * b, 0);
        check("Div", i, o[3 * LEN + i], a / b, 0);
        check("Max", i, o[4 * LEN + i], a > b ? a : b, 0);
        check("Exp", i, o[5 * LEN + i], std::exp(a), 1e-6f);
        check("Ln(|x|+1)", i, o[6 * LEN + i], std::log(std::fabs(a) + 1.0f), 1e-6f);
        check("Relu", i, o[7 * LEN + i], a > 0 ? a : 0.0f, 0);
        check("Sqrt(Relu)", i, o[8 * LEN + i], std::sqrt(a > 0 ? a : 0.0f), 1e-7f);
        check("Reciprocal(y/2)", i, o[9 * LEN + i], 1.0f / (b * 0.5f), 1e-7f);
        sum += a;
    }
    check("ReduceSum", 0, o[OUT_SCALARS], sum, 1e-6f);
    check("ReduceMax", 0, o[OUT_SCALARS + 2], 9.5f, 0);
    uint32_t index;
    std::memcpy(&index, &o[OUT_SCALARS + 3], 4);
    if (index != 11 && bad++ < 10) std::printf("ReduceMax index: got %u want 11\n", index);
    for (uint32_t i = 0; i < 4; ++i) check("Rsqrt", i, o[OUT_SCALARS + 8 + i], 1.0f / std::sqrt(2.0f), 1e-7f);
    for (uint32_t r = 0; r < 3; ++r) {
        for (uint32_t c = 0; c < 8; ++c) {
            const float want = c == 0 || c > 5 ? -1.0f : xs[r * 7 + c - 1];
            check("DataCopyPad rows", r * 8 + c, o[OUT_ROWS + r * 8 + c], want, 0);
        }
    }
    for (uint32_t i = 0; i < 24; ++i) {
        const float want = i < 8 ? o[OUT_ROWS + i] : (i >= 16 ? o[OUT_ROWS + i - 8] : 777.0f);
        check("DataCopy strided", i, o[OUT_STRIDED + i], want, 0);
    }
    if (bad != 0) return 1;
    std::printf("vector_ops: OK\n");
    return 0;
}
