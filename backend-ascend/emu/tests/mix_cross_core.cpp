// MIX 1:2 kernel on 2 AI Cores: each AIC computes a 16x16 half GEMM tile into a GM workspace
// (Fixpipe, fp32) and signals its two AIVs (CrossCoreSetFlag mode 2); each AIV scales its half of
// the rows by 2 and signals back; the AIC waits for both AIVs.
#include <cstdio>

#include "kernel_operator.h"
using namespace AscendC;

constexpr uint16_t FLAG_C_READY = 3;
constexpr uint16_t FLAG_C_DONE = 4;

extern "C" __global__ __aicore__ void mix_kernel(GM_ADDR a, GM_ADDR b, GM_ADDR out, GM_ADDR workspace, GM_ADDR tiling) {
    (void)tiling;
    GlobalTensor<float> wsGm, outGm;
    wsGm.SetGlobalBuffer((__gm__ float*)workspace, 2 * 256);
    outGm.SetGlobalBuffer((__gm__ float*)out, 2 * 256);
    TPipe pipe;
    if ASCEND_IS_AIC {
        const int64_t blk = GetBlockIdx();
        GlobalTensor<half> aGm, bGm;
        aGm.SetGlobalBuffer((__gm__ half*)a + blk * 256, 256);
        bGm.SetGlobalBuffer((__gm__ half*)b, 256);
        TQue<TPosition::A1, 1> qA1;
        TQue<TPosition::B1, 1> qB1;
        TQue<TPosition::A2, 1> qA2;
        TQue<TPosition::B2, 1> qB2;
        TQue<TPosition::CO1, 1> qC;
        pipe.InitBuffer(qA1, 1, 512);
        pipe.InitBuffer(qB1, 1, 512);
        pipe.InitBuffer(qA2, 1, 512);
        pipe.InitBuffer(qB2, 1, 512);
        pipe.InitBuffer(qC, 1, 1024);
        LocalTensor<half> a1 = qA1.AllocTensor<half>();
        LocalTensor<half> b1 = qB1.AllocTensor<half>();
        DataCopy(a1, aGm, Nd2NzParams(1, 16, 16, 0, 16, 16, 1, 0));
        DataCopy(b1, bGm, Nd2NzParams(1, 16, 16, 0, 16, 16, 1, 0));
        qA1.EnQue(a1);
        qB1.EnQue(b1);
        a1 = qA1.DeQue<half>();
        b1 = qB1.DeQue<half>();
        LocalTensor<half> a2 = qA2.AllocTensor<half>();
        LocalTensor<half> b2 = qB2.AllocTensor<half>();
        LoadData(a2, a1, LoadData2DParams(0, 1, 1, 0, 0, false, 0));
        LoadData(b2, b1, LoadData2DParams(0, 1, 1, 0, 0, true, 0));
        qA2.EnQue(a2);
        qB2.EnQue(b2);
        a2 = qA2.DeQue<half>();
        b2 = qB2.DeQue<half>();
        LocalTensor<float> c = qC.AllocTensor<float>();
        Mmad(c, a2, b2, MmadParams(16, 16, 16, 0, false, true));
        qC.EnQue(c);
        c = qC.DeQue<float>();
        Fixpipe<float, float, CFG_ROW_MAJOR>(wsGm[blk * 256], c, FixpipeParamsV220(16, 16, 16, 16, false));
        CrossCoreSetFlag<2, PIPE_FIX>(FLAG_C_READY);
        qC.FreeTensor(c);
        qA2.FreeTensor(a2);
        qB2.FreeTensor(b2);
        qA1.FreeTensor(a1);
        qB1.FreeTensor(b1);
        CrossCoreWaitFlag(FLAG_C_DONE);
    }
    if ASCEND_IS_AIV {
        const int64_t offset = (GetBlockIdx() / GetTaskRatio()) * 256 + GetSubBlockIdx() * 128;
        TQue<TPosition::VECIN, 1> inQ;
        TQue<TPosition::VECOUT, 1> outQ;
        pipe.InitBuffer(inQ, 1, 512);
        pipe.InitBuffer(outQ, 1, 512);
        CrossCoreWaitFlag(FLAG_C_READY);
        LocalTensor<float> x = inQ.AllocTensor<float>();
        DataCopy(x, wsGm[offset], 128);
        inQ.EnQue(x);
        x = inQ.DeQue<float>();
        LocalTensor<float> y = outQ.AllocTensor<float>();
        Muls(y, x, 2.0f, 128);
        outQ.EnQue(y);
        inQ.FreeTensor(x);
        y = outQ.DeQue<float>();
        DataCopy(outGm[offset], y, 128);
        outQ.FreeTensor(y);
        CrossCoreSetFlag<2, PIPE_MTE3>(FLAG_C_DONE);
    }
}

int main() {
    uint8_t* a = emu::GmAlloc(2 * 256 * 2);
    uint8_t* b = emu::GmAlloc(256 * 2);
    uint8_t* out = emu::GmAlloc(2 * 256 * 4);
    uint8_t* ws = emu::GmAlloc(2 * 256 * 4);
    half* ah = reinterpret_cast<half*>(a);
    half* bh = reinterpret_cast<half*>(b);
    for (int i = 0; i < 512; ++i) ah[i] = half(static_cast<float>(i % 13 - 6) * 0.25f);
    for (int i = 0; i < 256; ++i) bh[i] = half(static_cast<float>(i % 7 - 3) * 0.5f);
    emu::Launch(emu::KernelType::MIX_AIC_1_2, 2, mix_kernel, a, b, out, ws, (GM_ADDR) nullptr);
    const float* o = reinterpret_cast<const float*>(out);
    int bad = 0;
    for (int blk = 0; blk < 2; ++blk) {
        for (int i = 0; i < 16; ++i) {
            for (int l = 0; l < 16; ++l) {
                float acc = 0.0f;
                for (int j = 0; j < 16; ++j) acc += static_cast<float>(ah[blk * 256 + i * 16 + j]) * static_cast<float>(bh[j * 16 + l]);
                const float got = o[blk * 256 + i * 16 + l];
                if (got != 2.0f * acc && bad++ < 5) std::printf("block %d C(%d,%d): got %g want %g\n", blk, i, l, got, 2.0f * acc);
            }
        }
    }
    if (bad != 0) return 1;
    std::printf("mix_cross_core: OK\n");
    return 0;
}
