// Check: a queue tensor still allocated at kernel end fails.
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void not_freed(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)x, (void)y, (void)workspace, (void)tiling;
    TPipe pipe;
    TQue<TPosition::VECOUT, 1> outQueue;
    pipe.InitBuffer(outQueue, 1, 256);
    LocalTensor<float> t = outQueue.AllocTensor<float>();
    Duplicate(t, 1.0f, 64);
    outQueue.EnQue(t);
    LocalTensor<float> u = outQueue.DeQue<float>();
    (void)u;  // FreeTensor missing
}

int main() {
    emu::Launch(emu::KernelType::AIV_ONLY, 1, not_freed, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
