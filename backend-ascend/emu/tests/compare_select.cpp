// Compare (bit mask, LSB first) and Select in tensor-tensor and tensor-scalar modes on one AIV:
// z = where(x < y, x, y) and w = where(x >= y, x, -1), checked against plain C++.
#include <cstdio>

#include "kernel_operator.h"
using namespace AscendC;

constexpr uint32_t N = 128;  // 2 repeats of 64 floats

extern "C" __global__ __aicore__ void compare_select(GM_ADDR x, GM_ADDR y, GM_ADDR z, GM_ADDR workspace, GM_ADDR tiling) {
    (void)workspace;
    (void)tiling;
    GlobalTensor<float> xGm, yGm, zGm;
    xGm.SetGlobalBuffer((__gm__ float*)x, N);
    yGm.SetGlobalBuffer((__gm__ float*)y, N);
    zGm.SetGlobalBuffer((__gm__ float*)z, 2 * N);
    TPipe pipe;
    TQue<TPosition::VECIN, 1> inQ;
    TQue<TPosition::VECOUT, 1> outQ;
    TBuf<TPosition::VECCALC> maskBuf;
    pipe.InitBuffer(inQ, 1, 2 * N * sizeof(float));
    pipe.InitBuffer(outQ, 1, 2 * N * sizeof(float));
    pipe.InitBuffer(maskBuf, 64);  // two 16-byte masks, each 32-byte aligned
    LocalTensor<float> in = inQ.AllocTensor<float>();
    DataCopy(in, xGm, N);
    DataCopy(in[N], yGm, N);
    inQ.EnQue(in);
    in = inQ.DeQue<float>();
    LocalTensor<uint8_t> lt = maskBuf.Get<uint8_t>();
    LocalTensor<uint8_t> ge = lt[32];
    Compare(lt, in, in[N], CMPMODE::LT, N);
    Compare(ge, in, in[N], CMPMODE::GE, N);
    LocalTensor<float> out = outQ.AllocTensor<float>();
    Select(out, lt, in, in[N], SELMODE::VSEL_TENSOR_TENSOR_MODE, N);
    Select(out[N], ge, in, -1.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, N);
    outQ.EnQue(out);
    inQ.FreeTensor(in);
    out = outQ.DeQue<float>();
    DataCopy(zGm, out, 2 * N);
    outQ.FreeTensor(out);
}

int main() {
    uint8_t* x = emu::GmAlloc(N * 4);
    uint8_t* y = emu::GmAlloc(N * 4);
    uint8_t* z = emu::GmAlloc(2 * N * 4);
    float* xs = reinterpret_cast<float*>(x);
    float* ys = reinterpret_cast<float*>(y);
    for (uint32_t i = 0; i < N; ++i) {
        xs[i] = static_cast<float>(static_cast<int>(i * 17 % 29) - 14);
        ys[i] = static_cast<float>(static_cast<int>(i * 5 % 31) - 15);
    }
    emu::Launch(emu::KernelType::AIV_ONLY, 1, compare_select, x, y, z, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    const float* zs = reinterpret_cast<const float*>(z);
    int bad = 0;
    for (uint32_t i = 0; i < N; ++i) {
        const float wantMin = xs[i] < ys[i] ? xs[i] : ys[i];
        const float wantGe = xs[i] >= ys[i] ? xs[i] : -1.0f;
        if (zs[i] != wantMin && bad++ < 5) std::printf("min[%u]: got %g want %g\n", i, zs[i], wantMin);
        if (zs[N + i] != wantGe && bad++ < 5) std::printf("ge[%u]: got %g want %g\n", i, zs[N + i], wantGe);
    }
    if (bad != 0) return 1;
    std::printf("compare_select: OK\n");
    return 0;
}
