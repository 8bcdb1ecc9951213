// Check: a DataCopy reading past the end of a launch argument fails even when the argument
// shares a larger allocation with other tensors (the host's arena of intermediates).
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void gm_arena_overflow(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)y, (void)workspace, (void)tiling;
    GlobalTensor<float> xGm;
    xGm.SetGlobalBuffer((__gm__ float*)x, 64);
    TPipe pipe;
    TQue<TPosition::VECIN, 1> inQueue;
    pipe.InitBuffer(inQueue, 1, 512);
    LocalTensor<float> t = inQueue.AllocTensor<float>();
    DataCopy(t, xGm[32], 64);  // elements 32..95 of a 64-element tensor, inside the arena
    inQueue.FreeTensor(t);
}

int main() {
    uint8_t* arena = emu::GmAlloc(1024 * sizeof(float));
    uint8_t* x = arena + 512;
    uint8_t* y = arena;
    const emu::ScopedGmRegions regions{{x, 64 * sizeof(float)}, {y, 64 * sizeof(float)}};
    emu::Launch(emu::KernelType::AIV_ONLY, 1, gm_arena_overflow, x, y, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
