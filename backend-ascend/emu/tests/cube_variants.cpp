// Cube paths beyond the bf16 GEMM, on one AIC:
//  (a) GEMV mode (m = 1): a half row vector times a 32x32 half matrix, Fixpipe F322F16 with ReLU;
//  (b) int8 x int8 -> int32 with B given column-major (Bᵀ in GM, copied without transpose).
#include <cstdio>

#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void cube_variants(GM_ADDR v, GM_ADDR w, GM_ADDR a8, GM_ADDR bt8, GM_ADDR out) {
    GlobalTensor<half> vGm, wGm, yGm;
    vGm.SetGlobalBuffer((__gm__ half*)v, 32);
    wGm.SetGlobalBuffer((__gm__ half*)w, 32 * 32);
    yGm.SetGlobalBuffer((__gm__ half*)out, 32);
    GlobalTensor<int8_t> aGm, btGm;
    aGm.SetGlobalBuffer((__gm__ int8_t*)a8, 16 * 32);
    btGm.SetGlobalBuffer((__gm__ int8_t*)bt8, 16 * 32);
    GlobalTensor<int32_t> cGm;
    cGm.SetGlobalBuffer((__gm__ int32_t*)(out + 64), 16 * 16);

    TPipe pipe;
    TBuf<TPosition::A1> l1;
    TBuf<TPosition::A2> l0a;
    TBuf<TPosition::B2> l0b;
    TBuf<TPosition::CO1> l0c;
    pipe.InitBuffer(l1, 8 * 512);
    pipe.InitBuffer(l0a, 2 * 512);
    pipe.InitBuffer(l0b, 4 * 512);
    pipe.InitBuffer(l0c, 2 * 1024);

    // (a) GEMV. Nd2Nz of a single row with dstNzC0Stride = 1 lays the vector out contiguously.
    LocalTensor<half> l1v = l1.Get<half>();
    LocalTensor<half> l1w = l1v[512];  // fractals 2..5
    DataCopy(l1v, vGm, Nd2NzParams(1, 1, 32, 0, 32, 1, 1, 0));
    DataCopy(l1w, wGm, Nd2NzParams(1, 32, 32, 0, 32, 32, 1, 0));
    SetFlag<HardEvent::MTE2_MTE1>(EVENT_ID0);
    WaitFlag<HardEvent::MTE2_MTE1>(EVENT_ID0);
    LocalTensor<half> a2 = l0a.Get<half>();
    LocalTensor<half> b2 = l0b.Get<half>();
    LoadData(a2, l1v, LoadData2DParams(0, 1, 1, 0, 0, false, 0));
    for (uint32_t k1 = 0; k1 < 2; ++k1) {
        LoadData(b2[k1 * 2 * 256], l1w[k1 * 256], LoadData2DParams(0, 2, 2, 0, 0, true, 0));
    }
    SetFlag<HardEvent::MTE1_M>(EVENT_ID0);
    WaitFlag<HardEvent::MTE1_M>(EVENT_ID0);
    LocalTensor<float> c = l0c.Get<float>();
    Mmad(c, a2, b2, MmadParams(1, 32, 32, 0, false, true));
    SetFlag<HardEvent::M_FIX>(EVENT_ID0);
    WaitFlag<HardEvent::M_FIX>(EVENT_ID0);
    Fixpipe<half, float, CFG_ROW_MAJOR>(yGm, c, FixpipeParamsV220(32, 1, 16, 32, true, QuantMode_t::F322F16, 0, 1, 0, 0, 0));
    SetFlag<HardEvent::FIX_M>(EVENT_ID0);
    SetFlag<HardEvent::M_MTE1>(EVENT_ID0);
    WaitFlag<HardEvent::M_MTE1>(EVENT_ID0);

    // (b) int8: A (16x32) and Bᵀ (16x32) each fill one 16x32 fractal; both copy as-is to L0.
    LocalTensor<int8_t> l1a8 = l1.Get<int8_t>();
    LocalTensor<int8_t> l1b8 = l1a8[512];
    SetFlag<HardEvent::MTE1_MTE2>(EVENT_ID0);
    WaitFlag<HardEvent::MTE1_MTE2>(EVENT_ID0);
    DataCopy(l1a8, aGm, Nd2NzParams(1, 16, 32, 0, 32, 16, 1, 0));
    DataCopy(l1b8, btGm, Nd2NzParams(1, 16, 32, 0, 32, 16, 1, 0));
    SetFlag<HardEvent::MTE2_MTE1>(EVENT_ID0);
    WaitFlag<HardEvent::MTE2_MTE1>(EVENT_ID0);
    LoadData(l0a.Get<int8_t>(), l1a8, LoadData2DParams(0, 1, 1, 0, 0, false, 0));
    LoadData(l0b.Get<int8_t>(), l1b8, LoadData2DParams(0, 1, 1, 0, 0, false, 0));
    SetFlag<HardEvent::MTE1_M>(EVENT_ID0);
    WaitFlag<HardEvent::MTE1_M>(EVENT_ID0);
    WaitFlag<HardEvent::FIX_M>(EVENT_ID0);
    LocalTensor<int32_t> c32 = l0c.Get<int32_t>();
    Mmad(c32, l0a.Get<int8_t>(), l0b.Get<int8_t>(), MmadParams(16, 16, 32, 0, false, true));
    SetFlag<HardEvent::M_FIX>(EVENT_ID0);
    WaitFlag<HardEvent::M_FIX>(EVENT_ID0);
    Fixpipe<int32_t, int32_t, CFG_ROW_MAJOR>(cGm, c32, FixpipeParamsV220(16, 16, 16, 16, false));
}

int main() {
    uint8_t* v = emu::GmAlloc(32 * 2);
    uint8_t* w = emu::GmAlloc(32 * 32 * 2);
    uint8_t* a8 = emu::GmAlloc(16 * 32);
    uint8_t* bt8 = emu::GmAlloc(16 * 32);
    uint8_t* out = emu::GmAlloc(64 + 16 * 16 * 4);
    half* vh = reinterpret_cast<half*>(v);
    half* wh = reinterpret_cast<half*>(w);
    int8_t* as = reinterpret_cast<int8_t*>(a8);
    int8_t* bs = reinterpret_cast<int8_t*>(bt8);
    for (int i = 0; i < 32; ++i) vh[i] = half(static_cast<float>(i % 9 - 4) * 0.375f);
    for (int i = 0; i < 32 * 32; ++i) wh[i] = half(static_cast<float>(i % 11 - 5) * 0.0625f + 0.001f * static_cast<float>(i % 5));
    for (int i = 0; i < 16 * 32; ++i) {
        as[i] = static_cast<int8_t>(i * 37 % 255 - 127);
        bs[i] = static_cast<int8_t>(i * 53 % 251 - 125);
    }
    emu::Launch(emu::KernelType::AIC_ONLY, 1, cube_variants, v, w, a8, bt8, out);
    int bad = 0;
    const half* y = reinterpret_cast<const half*>(out);
    for (int l = 0; l < 32; ++l) {
        float acc = 0.0f;
        for (int j = 0; j < 32; ++j) acc += static_cast<float>(vh[j]) * static_cast<float>(wh[j * 32 + l]);
        const float want = static_cast<float>(half(acc > 0 ? acc : 0.0f));
        if (static_cast<float>(y[l]) != want && bad++ < 5) std::printf("gemv[%d]: got %g want %g\n", l, static_cast<float>(y[l]), want);
    }
    const int32_t* c = reinterpret_cast<const int32_t*>(out + 64);
    for (int i = 0; i < 16; ++i) {
        for (int l = 0; l < 16; ++l) {
            int32_t acc = 0;
            for (int j = 0; j < 32; ++j) acc += static_cast<int32_t>(as[i * 32 + j]) * static_cast<int32_t>(bs[l * 32 + j]);
            if (c[i * 16 + l] != acc && bad++ < 5) std::printf("int8 C(%d,%d): got %d want %d\n", i, l, c[i * 16 + l], acc);
        }
    }
    if (bad != 0) return 1;
    std::printf("cube_variants: OK\n");
    return 0;
}
