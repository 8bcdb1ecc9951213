// Check: a WaitFlag with no SetFlag of the same event and id before it fails.
#include "kernel_operator.h"
using namespace AscendC;

extern "C" __global__ __aicore__ void wait_without_set(GM_ADDR x, GM_ADDR y, GM_ADDR workspace, GM_ADDR tiling) {
    (void)x, (void)y, (void)workspace, (void)tiling;
    SetFlag<HardEvent::MTE2_V>(EVENT_ID0);
    WaitFlag<HardEvent::MTE2_V>(EVENT_ID1);  // id mismatch
}

int main() {
    emu::Launch(emu::KernelType::AIV_ONLY, 1, wait_without_set, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr, (GM_ADDR) nullptr);
    return 0;
}
