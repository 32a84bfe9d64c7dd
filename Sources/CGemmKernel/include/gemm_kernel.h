// gemm_kernel.h: swiftcam's AVX-512 matrix-product micro-kernel, the one piece of the engine
// that needs CPU intrinsics (Swift has no per-function target features, so it lives in C and
// runs only after swiftcam_gemm_kernel_available() said yes). The blocking, threading and weight
// packing around it are Swift: Sources/SwiftCAM/Kernels/PackedGemm.swift.
//
// The product is C (m, n) = A (m, k) · B (k, n), row-major. A (the weights) is packed once, in
// panels of SWIFTCAM_GEMM_PANEL_ROWS rows: panel p holds rows 8p..8p+7, as (k, 8), zero-padded.
// B is packed per block of k rows into tiles of SWIFTCAM_GEMM_TILE_COLUMNS columns, (kc, 48),
// zero-padded. One call computes one (8, 48) tile of C over one block of k.
#ifndef SWIFTCAM_GEMM_KERNEL_H
#define SWIFTCAM_GEMM_KERNEL_H

#include <stddef.h>

#define SWIFTCAM_GEMM_PANEL_ROWS 8
#define SWIFTCAM_GEMM_TILE_COLUMNS 48

/// What the last block of k adds to a tile before storing it: a bias per row, a residual of C's
/// layout, then ReLU. Pointers are positioned at the tile's first row / element; either may be NULL.
typedef struct {
    const float *bias;          // (rows)
    const float *residual;      // (rows, columns), rows residual_stride apart
    ptrdiff_t residual_stride;
    int relu;
} swiftcam_gemm_epilogue;

/// 1 when this CPU (and its operating system) runs the AVX-512 kernel, else 0.
int swiftcam_gemm_kernel_available(void);

/// Packs rows [0, depth) x columns [0, columns) of b (rows `stride` floats apart) into
/// ceil(columns / 48) tiles of (depth, 48) floats, one after the other, zero past `columns`.
/// `packed` is best 64-byte aligned (each tile then starts on a cache line).
void swiftcam_gemm_pack_columns(const float *b, ptrdiff_t stride, ptrdiff_t depth, ptrdiff_t columns,
                                float *packed);

/// tile of C (rows <= 8, columns <= 48, rows `c_stride` apart) = [tile +] panel (depth, 8) · tile (depth, 48),
/// then the epilogue when one is given (the last block of k). `accumulate` adds to what C holds.
void swiftcam_gemm_tile(const float *packed_panel, const float *packed_tile, ptrdiff_t depth,
                        float *c, ptrdiff_t c_stride, ptrdiff_t rows, ptrdiff_t columns, int accumulate,
                        const swiftcam_gemm_epilogue *epilogue);

/// swiftcam_gemm_tile for `rows` rows (any count) of C from consecutive panels `panel_stride`
/// floats apart: one call per tile and block of rows instead of one per panel. The epilogue is
/// positioned at the first row, as for one tile.
void swiftcam_gemm_panels(const float *packed_panels, ptrdiff_t panel_stride, const float *packed_tile,
                          ptrdiff_t depth, float *c, ptrdiff_t c_stride, ptrdiff_t rows, ptrdiff_t columns,
                          int accumulate, const swiftcam_gemm_epilogue *epilogue);

#endif
