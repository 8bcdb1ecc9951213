// Check: queue buffers beyond the 192 KiB UB of one AIV fail in TPipe::InitBuffer.
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void ub_overflow(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)x, (void)y, (void)workspace, (void)tiling;
    TPipe pipe;
    TQue<TPosition::VECIN, 1> inQueue;
    TQue<TPosition::VECOUT, 1> outQueue;
    pipe.InitBuffer(inQueue, 2, 64 * 1024);
    pipe.InitBuffer(outQueue, 2, 64 * 1024);  // 256 KiB in total
}

int main() {
    emu::Launch(emu::KernelType::AIV_ONLY, 1, ub_overflow, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
