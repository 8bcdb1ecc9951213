// Check: Fixpipe reading L0C right after Mmad wrote it, without M_FIX ordering, fails.
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void missing_sync_cube(GM_ADDR c, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)y, (void)workspace, (void)tiling;
    GlobalTensor<float> cGm;
    cGm.SetGlobalBuffer((__gm__ float*)c, 256);
    TPipe pipe;
    TBuf<TPosition::A2> l0a;
    TBuf<TPosition::B2> l0b;
    TBuf<TPosition::CO1> l0c;
    pipe.InitBuffer(l0a, 512);
    pipe.InitBuffer(l0b, 512);
    pipe.InitBuffer(l0c, 1024);
    PipeBarrier<PIPE_ALL>();
    Mmad(l0c.Get<float>(), l0a.Get<half>(), l0b.Get<half>(), MmadParams(16, 16, 16, 0, false, true));
    Fixpipe<float, float, CFG_ROW_MAJOR>(cGm, l0c.Get<float>(), FixpipeParamsV220(16, 16, 16, 16, false));
}

int main() {
    uint8_t* c = emu::GmAlloc(256 * sizeof(float));
    emu::Launch(emu::KernelType::AIC_ONLY, 1, missing_sync_cube, c, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
