// Double-buffered elementwise add of two half vectors on 4 AIV cores, written the way the cubevec
// emitter writes vector kernels (classic entry point, POD tiling struct in GM).
#include <cstdio>
#include <vector>

#include "kernel_operator.h"
using namespace AscendC;

struct AddTiling {
    uint32_t totalLength;  // elements over all cores
    uint32_t tileLength;   // elements per tile (multiple of 16)
};

constexpr int32_t BUFFER_NUM = 2;

class KernelAdd {
public:
    __aicore__ inline void Init(GM_ADDR x, GM_ADDR y, GM_ADDR z, const AddTiling& t) {
        blockLength_ = t.totalLength / GetBlockNum();
        tileLength_ = t.tileLength;
        tileNum_ = blockLength_ / tileLength_;
        xGm_.SetGlobalBuffer((__gm__ half*)x + blockLength_ * GetBlockIdx(), blockLength_);
        yGm_.SetGlobalBuffer((__gm__ half*)y + blockLength_ * GetBlockIdx(), blockLength_);
        zGm_.SetGlobalBuffer((__gm__ half*)z + blockLength_ * GetBlockIdx(), blockLength_);
        pipe_.InitBuffer(inQueueX_, BUFFER_NUM, tileLength_ * sizeof(half));
        pipe_.InitBuffer(inQueueY_, BUFFER_NUM, tileLength_ * sizeof(half));
        pipe_.InitBuffer(outQueueZ_, BUFFER_NUM, tileLength_ * sizeof(half));
    }
    __aicore__ inline void Process() {
        for (uint32_t i = 0; i < tileNum_; ++i) {
            CopyIn(i);
            Compute();
            CopyOut(i);
        }
    }

private:
    __aicore__ inline void CopyIn(uint32_t progress) {
        LocalTensor<half> xLocal = inQueueX_.AllocTensor<half>();
        LocalTensor<half> yLocal = inQueueY_.AllocTensor<half>();
        DataCopy(xLocal, xGm_[progress * tileLength_], tileLength_);
        DataCopy(yLocal, yGm_[progress * tileLength_], tileLength_);
        inQueueX_.EnQue(xLocal);
        inQueueY_.EnQue(yLocal);
    }
    __aicore__ inline void Compute() {
        LocalTensor<half> xLocal = inQueueX_.DeQue<half>();
        LocalTensor<half> yLocal = inQueueY_.DeQue<half>();
        LocalTensor<half> zLocal = outQueueZ_.AllocTensor<half>();
        Add(zLocal, xLocal, yLocal, tileLength_);
        outQueueZ_.EnQue<half>(zLocal);
        inQueueX_.FreeTensor(xLocal);
        inQueueY_.FreeTensor(yLocal);
    }
    __aicore__ inline void CopyOut(uint32_t progress) {
        LocalTensor<half> zLocal = outQueueZ_.DeQue<half>();
        DataCopy(zGm_[progress * tileLength_], zLocal, tileLength_);
        outQueueZ_.FreeTensor(zLocal);
    }

    TPipe pipe_;
    TQue<TPosition::VECIN, 1> inQueueX_, inQueueY_;
    TQue<TPosition::VECOUT, 1> outQueueZ_;
    GlobalTensor<half> xGm_, yGm_, zGm_;
    uint32_t blockLength_ = 0, tileLength_ = 0, tileNum_ = 0;
};

extern "C" __global__ __aicore__ void add_custom(GM_ADDR x, GM_ADDR y, GM_ADDR z, GM_ADDR workspace, GM_ADDR tiling) {
    (void)workspace;
    AddTiling t;
    std::memcpy(&t, tiling, sizeof t);
    KernelAdd op;
    op.Init(x, y, z, t);
    op.Process();
}

int main() {
    const uint32_t blocks = 4, total = 4 * 8 * 256;
    const AddTiling tiling{total, 256};
    uint8_t* x = emu::GmAlloc(total * 2);
    uint8_t* y = emu::GmAlloc(total * 2);
    uint8_t* z = emu::GmAlloc(total * 2);
    uint8_t* t = emu::GmAlloc(sizeof tiling);
    std::memcpy(t, &tiling, sizeof tiling);
    std::vector<float> xs(total), ys(total);
    for (uint32_t i = 0; i < total; ++i) {
        xs[i] = static_cast<float>(static_cast<int>(i * 37 % 1001) - 500) / 64.0f;
        ys[i] = static_cast<float>(static_cast<int>(i * 91 % 997) - 498) / 3.0f;
        reinterpret_cast<half*>(x)[i] = half(xs[i]);
        reinterpret_cast<half*>(y)[i] = half(ys[i]);
    }
    emu::Launch(emu::KernelType::AIV_ONLY, blocks, add_custom, x, y, z, (GM_ADDR) nullptr, t);
    uint32_t bad = 0;
    for (uint32_t i = 0; i < total; ++i) {
        const float a = reinterpret_cast<half*>(x)[i];
        const float b = reinterpret_cast<half*>(y)[i];
        const half want(a + b);  // exact in float, then one RNE rounding to half
        const half got = reinterpret_cast<half*>(z)[i];
        if (want.bits != got.bits && bad++ < 5) std::printf("mismatch at %u: got 0x%04x want 0x%04x\n", i, got.bits, want.bits);
    }
    if (bad != 0) return 1;
    std::printf("vector_add: %u elements OK\n", total);
    return 0;
}
