// Cast rounding on one AIV: float → bfloat16 under every legal RoundMode, float → half (RINT) and
// float → int32 (RINT, ROUND), using TBuf scratch and hand-written SetFlag/WaitFlag (one id from
// TPipe::AllocEventID). Expected bit patterns were derived by hand and agree with ml_dtypes /
// numpy (RNE) for the RINT columns.
#include <cstdio>

#include "kernel_operator.h"
using namespace AscendC;

constexpr uint32_t N = 16;
constexpr int BF16_MODES = 5;
constexpr RoundMode kModes[BF16_MODES] = {RoundMode::CAST_RINT, RoundMode::CAST_FLOOR, RoundMode::CAST_CEIL,
                                          RoundMode::CAST_ROUND, RoundMode::CAST_TRUNC};

extern "C" __global__ __aicore__ void cast_rounding(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)workspace;
    (void)tiling;
    GlobalTensor<float> xGm;
    xGm.SetGlobalBuffer((__gm__ float*)x, N);
    GlobalTensor<bfloat16_t> bfGm;
    bfGm.SetGlobalBuffer((__gm__ bfloat16_t*)y, N * BF16_MODES);
    GlobalTensor<half> hGm;
    hGm.SetGlobalBuffer((__gm__ half*)(y + N * BF16_MODES * 2), N);
    GlobalTensor<int32_t> iGm;
    iGm.SetGlobalBuffer((__gm__ int32_t*)(y + N * (BF16_MODES + 1) * 2), 2 * N);

    TPipe pipe;
    TBuf<TPosition::VECCALC> inBuf, bfBuf, hBuf, iBuf;
    pipe.InitBuffer(inBuf, N * sizeof(float));
    pipe.InitBuffer(bfBuf, N * BF16_MODES * sizeof(bfloat16_t));
    pipe.InitBuffer(hBuf, N * sizeof(half));
    pipe.InitBuffer(iBuf, 2 * N * sizeof(int32_t));
    LocalTensor<float> in = inBuf.Get<float>();
    LocalTensor<bfloat16_t> bf = bfBuf.Get<bfloat16_t>();
    LocalTensor<half> h = hBuf.Get<half>();
    LocalTensor<int32_t> iv = iBuf.Get<int32_t>();

    DataCopy(in, xGm, N);
    SetFlag<HardEvent::MTE2_V>(EVENT_ID0);
    WaitFlag<HardEvent::MTE2_V>(EVENT_ID0);
    for (int m = 0; m < BF16_MODES; ++m) Cast(bf[m * N], in, kModes[m], N);
    Cast(h, in, RoundMode::CAST_RINT, N);
    Cast(iv, in, RoundMode::CAST_RINT, N);
    Cast(iv[N], in, RoundMode::CAST_ROUND, N);
    const TEventID vToMte3 = GetTPipePtr()->AllocEventID<HardEvent::V_MTE3>();
    SetFlag<HardEvent::V_MTE3>(vToMte3);
    WaitFlag<HardEvent::V_MTE3>(vToMte3);
    GetTPipePtr()->ReleaseEventID<HardEvent::V_MTE3>(vToMte3);
    DataCopy(bfGm, bf, N * BF16_MODES);
    DataCopy(hGm, h, N);
    DataCopy(iGm, iv, 2 * N);
}

int main() {
    const float inputs[N] = {1.00390625f, 1.01171875f, -1.00390625f, 3.4028234663852886e38f, 1e-40f, 65519.0f,
                             65520.0f, 0.1f, -2.5f, 2.5f, std::numeric_limits<float>::quiet_NaN(), 0, 0, 0, 0, 0};
    // Columns: RINT, FLOOR, CEIL, ROUND, TRUNC.
    const uint16_t wantBf16[11][BF16_MODES] = {
        {0x3F80, 0x3F80, 0x3F81, 0x3F81, 0x3F80}, {0x3F82, 0x3F81, 0x3F82, 0x3F82, 0x3F81},
        {0xBF80, 0xBF81, 0xBF80, 0xBF81, 0xBF80}, {0x7F80, 0x7F7F, 0x7F80, 0x7F80, 0x7F7F},
        {0x0001, 0x0001, 0x0002, 0x0001, 0x0001}, {0x4780, 0x477F, 0x4780, 0x4780, 0x477F},
        {0x4780, 0x477F, 0x4780, 0x4780, 0x477F}, {0x3DCD, 0x3DCC, 0x3DCD, 0x3DCD, 0x3DCC},
        {0xC020, 0xC020, 0xC020, 0xC020, 0xC020}, {0x4020, 0x4020, 0x4020, 0x4020, 0x4020},
        {0x7FC0, 0x7FC0, 0x7FC0, 0x7FC0, 0x7FC0}};
    const uint16_t wantHalf[11] = {0x3C04, 0x3C0C, 0xBC04, 0x7C00, 0x0000, 0x7BFF, 0x7C00, 0x2E66, 0xC100, 0x4100, 0x7E00};
    const int32_t wantRint[11] = {1, 1, -1, 2147483647, 0, 65519, 65520, 0, -2, 2, 0};
    const int32_t wantRound[11] = {1, 1, -1, 2147483647, 0, 65519, 65520, 0, -3, 3, 0};

    uint8_t* x = emu::GmAlloc(sizeof inputs);
    std::memcpy(x, inputs, sizeof inputs);
    const size_t outBytes = N * (BF16_MODES + 1) * 2 + 2 * N * 4;
    uint8_t* y = emu::GmAlloc(outBytes);
    emu::Launch(emu::KernelType::AIV_ONLY, 1, cast_rounding, x, y, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    int bad = 0;
    for (int i = 0; i < 11; ++i) {
        for (int m = 0; m < BF16_MODES; ++m) {
            uint16_t got;
            std::memcpy(&got, y + (m * N + i) * 2, 2);
            if (got != wantBf16[i][m] && bad++ < 10) std::printf("bf16 mode %d input %d: got 0x%04x want 0x%04x\n", m, i, got, wantBf16[i][m]);
        }
        uint16_t gotHalf;
        std::memcpy(&gotHalf, y + (BF16_MODES * N + i) * 2, 2);
        if (gotHalf != wantHalf[i] && bad++ < 10) std::printf("half input %d: got 0x%04x want 0x%04x\n", i, gotHalf, wantHalf[i]);
        int32_t gotRint, gotRound;
        std::memcpy(&gotRint, y + N * (BF16_MODES + 1) * 2 + i * 4, 4);
        std::memcpy(&gotRound, y + N * (BF16_MODES + 1) * 2 + (N + i) * 4, 4);
        if (gotRint != wantRint[i] && bad++ < 10) std::printf("int32 RINT input %d: got %d want %d\n", i, gotRint, wantRint[i]);
        if (gotRound != wantRound[i] && bad++ < 10) std::printf("int32 ROUND input %d: got %d want %d\n", i, gotRound, wantRound[i]);
    }
    if (bad != 0) return 1;
    std::printf("cast_rounding: OK\n");
    return 0;
}
