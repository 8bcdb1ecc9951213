// Check: a SetFlag that no WaitFlag consumes fails at kernel end.
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void unpaired_setflag(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)x, (void)y, (void)workspace, (void)tiling;
    SetFlag<HardEvent::V_MTE3>(EVENT_ID1);
    SetFlag<HardEvent::MTE2_V>(EVENT_ID0);
    WaitFlag<HardEvent::MTE2_V>(EVENT_ID0);
}

int main() {
    emu::Launch(emu::KernelType::AIV_ONLY, 1, unpaired_setflag, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
