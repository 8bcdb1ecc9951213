// Cube GEMM C(M×N, bf16) = A(M×K, bf16) · B(K×N, bf16) with fp32 accumulation on 2 AIC cores, each
// owning a block of rows: GM → L1 (Nd2Nz) → L0A / L0B (LoadData, B transposed per fractal) →
// Mmad over two K steps → Fixpipe to bf16. M, N and the second K step are not multiples of 16.
#include <cstdio>
#include <vector>

#include "kernel_operator.h"
using namespace AscendC;

struct GemmTiling {
    uint32_t m, n, k;
    uint32_t rowsPerBlock;  // multiple of 16
    uint32_t kStep;         // multiple of 16
};

static inline uint32_t RoundUp16(uint32_t v) { return (v + 15) / 16 * 16; }

extern "C" __global__ __aicore__ void gemm_bf16(GM_ADDR a, GM_ADDR b, GM_ADDR c, GM_ADDR workspace, GM_ADDR tiling) {
    (void)workspace;
    GemmTiling t;
    std::memcpy(&t, tiling, sizeof t);
    const uint32_t row0 = static_cast<uint32_t>(GetBlockIdx()) * t.rowsPerBlock;
    if (row0 >= t.m) return;
    const uint32_t rows = t.m - row0 < t.rowsPerBlock ? t.m - row0 : t.rowsPerBlock;
    const uint32_t m16 = RoundUp16(rows), n16 = RoundUp16(t.n), k16 = RoundUp16(t.k);

    GlobalTensor<bfloat16_t> aGm, bGm;
    GlobalTensor<bfloat16_t> cGm;
    aGm.SetGlobalBuffer((__gm__ bfloat16_t*)a, t.m * t.k);
    bGm.SetGlobalBuffer((__gm__ bfloat16_t*)b, t.k * t.n);
    cGm.SetGlobalBuffer((__gm__ bfloat16_t*)c, t.m * t.n);

    TPipe pipe;
    TQue<TPosition::A1, 1> qA1;
    TQue<TPosition::B1, 1> qB1;
    TQue<TPosition::A2, 1> qA2;
    TQue<TPosition::B2, 1> qB2;
    TQue<TPosition::CO1, 1> qCO1;
    pipe.InitBuffer(qA1, 1, m16 * k16 * sizeof(bfloat16_t));
    pipe.InitBuffer(qB1, 1, k16 * n16 * sizeof(bfloat16_t));
    pipe.InitBuffer(qA2, 1, m16 * t.kStep * sizeof(bfloat16_t));
    pipe.InitBuffer(qB2, 1, t.kStep * n16 * sizeof(bfloat16_t));
    pipe.InitBuffer(qCO1, 1, m16 * n16 * sizeof(float));

    LocalTensor<bfloat16_t> a1 = qA1.AllocTensor<bfloat16_t>();
    DataCopy(a1, aGm[row0 * t.k], Nd2NzParams(1, rows, t.k, 0, t.k, m16, 1, 0));
    qA1.EnQue(a1);
    LocalTensor<bfloat16_t> b1 = qB1.AllocTensor<bfloat16_t>();
    DataCopy(b1, bGm, Nd2NzParams(1, t.k, t.n, 0, t.n, k16, 1, 0));
    qB1.EnQue(b1);
    a1 = qA1.DeQue<bfloat16_t>();
    b1 = qB1.DeQue<bfloat16_t>();

    LocalTensor<float> c1 = qCO1.AllocTensor<float>();
    for (uint32_t k0 = 0; k0 < t.k; k0 += t.kStep) {
        const uint32_t kLen = t.k - k0 < t.kStep ? t.k - k0 : t.kStep;
        const uint32_t kFrac = (kLen + 15) / 16;
        LocalTensor<bfloat16_t> a2 = qA2.AllocTensor<bfloat16_t>();
        for (uint32_t mi = 0; mi < m16 / 16; ++mi) {
            LoadData(a2[mi * kFrac * 256], a1[mi * 256 + (k0 / 16) * m16 * 16],
                     LoadData2DParams(0, kFrac, m16 / 16, 0, 0, false, 0));
        }
        qA2.EnQue(a2);
        LocalTensor<bfloat16_t> b2 = qB2.AllocTensor<bfloat16_t>();
        for (uint32_t ki = 0; ki < kFrac; ++ki) {
            LoadData(b2[ki * (n16 / 16) * 256], b1[(k0 / 16 + ki) * 256],
                     LoadData2DParams(0, n16 / 16, k16 / 16, 0, 0, true, 0));
        }
        qB2.EnQue(b2);
        a2 = qA2.DeQue<bfloat16_t>();
        b2 = qB2.DeQue<bfloat16_t>();
        Mmad(c1, a2, b2, MmadParams(m16, n16, kLen, 0, false, k0 == 0));
        PipeBarrier<PIPE_M>();
        qA2.FreeTensor(a2);
        qB2.FreeTensor(b2);
    }
    qCO1.EnQue(c1);
    c1 = qCO1.DeQue<float>();
    FixpipeParamsV220 fp(t.n, rows, m16, t.n, false, QuantMode_t::F322BF16, 0, 1, 0, 0, 0);
    Fixpipe<bfloat16_t, float, CFG_ROW_MAJOR>(cGm[row0 * t.n], c1, fp);
    qCO1.FreeTensor(c1);
    qA1.FreeTensor(a1);
    qB1.FreeTensor(b1);
}

// Reference helpers, independent of the emulator's conversion code.
static uint16_t Bf16Rne(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
}
static float Bf16ToFloat(uint16_t b) {
    const uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

int main() {
    const GemmTiling t{50, 40, 72, 32, 48};
    uint8_t* a = emu::GmAlloc(t.m * t.k * 2);
    uint8_t* b = emu::GmAlloc(t.k * t.n * 2);
    uint8_t* c = emu::GmAlloc(t.m * t.n * 2);
    uint8_t* tiling = emu::GmAlloc(sizeof t);
    std::memcpy(tiling, &t, sizeof t);
    uint32_t seed = 12345;
    auto next = [&seed] {
        seed = seed * 1664525u + 1013904223u;
        return static_cast<float>(static_cast<int32_t>(seed >> 8) % 20000) / 7919.0f;
    };
    std::vector<uint16_t> av(t.m * t.k), bv(t.k * t.n);
    for (auto& v : av) v = Bf16Rne(next());
    for (auto& v : bv) v = Bf16Rne(next());
    std::memcpy(a, av.data(), av.size() * 2);
    std::memcpy(b, bv.data(), bv.size() * 2);
    emu::Launch(emu::KernelType::AIC_ONLY, 2, gemm_bf16, a, b, c, (GM_ADDR) nullptr, tiling);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < t.m; ++i) {
        for (uint32_t l = 0; l < t.n; ++l) {
            float acc = 0.0f;
            for (uint32_t j = 0; j < t.k; ++j) acc += Bf16ToFloat(av[i * t.k + j]) * Bf16ToFloat(bv[j * t.n + l]);
            const uint16_t want = Bf16Rne(acc);
            uint16_t got;
            std::memcpy(&got, c + (i * t.n + l) * 2, 2);
            if (got != want && bad++ < 5) std::printf("C(%u,%u): got 0x%04x want 0x%04x\n", i, l, got, want);
        }
    }
    if (bad != 0) return 1;
    std::printf("gemm_bf16: %ux%ux%u OK\n", t.m, t.n, t.k);
    return 0;
}
