// Check: more than 64 buffers in one TPipe fail.
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void too_many_buffers(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)x, (void)y, (void)workspace, (void)tiling;
    TPipe pipe;
    TQue<TPosition::VECIN, 1> inQueue;
    TBuf<TPosition::VECCALC> scratch;
    pipe.InitBuffer(inQueue, 64, 32);
    pipe.InitBuffer(scratch, 32);  // buffer 65
}

int main() {
    emu::Launch(emu::KernelType::AIV_ONLY, 1, too_many_buffers, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
