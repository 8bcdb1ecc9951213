// Check: cross-core flags in an AIV-only launch fail (no scheduler; the device would hang).
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void no_mix(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)x, (void)y, (void)workspace, (void)tiling;
    CrossCoreSetFlag<0, PIPE_MTE3>(1);
    CrossCoreWaitFlag(1);
}

int main() {
    emu::Launch(emu::KernelType::AIV_ONLY, 2, no_mix, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
