// gemm_kernel.c: the AVX-512 micro-kernel and column packing declared in gemm_kernel.h.
// A tile is 8 rows x up to 3 vectors of 16 columns: 24 accumulators in registers; per step of k,
// 3 vector loads of the packed columns, 8 broadcasts of the packed weights and 24 FMAs.
#include "gemm_kernel.h"

#if defined(__x86_64__)
#include <immintrin.h>

// How far ahead (floats) the kernel fetches weights: one panel at a depth block of 128 (4 KB).
// The weights stream from memory, and the hardware prefetcher stops at every 4 KB page, that is
// at every panel; fetching the next panel during this one measured 3-4% faster at batch 1.
#define PREFETCH_AHEAD 1024
#define KERNEL_TARGET __attribute__((target("avx512f,fma")))

int swiftcam_gemm_kernel_available(void) {
    __builtin_cpu_init();
    // The runtime's check includes the operating system saving the AVX-512 registers.
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
}

/// The lanes of vector `v` (columns 16v..16v+15) that lie below `columns`.
KERNEL_TARGET static inline __mmask16 lane_mask(ptrdiff_t columns, int v) {
    ptrdiff_t left = columns - 16 * v;
    if (left >= 16) return 0xffff;
    if (left <= 0) return 0;
    return (__mmask16)((1u << left) - 1);
}

void swiftcam_gemm_pack_columns(const float *b, ptrdiff_t stride, ptrdiff_t depth, ptrdiff_t columns,
                                float *packed) KERNEL_TARGET;
void swiftcam_gemm_pack_columns(const float *b, ptrdiff_t stride, ptrdiff_t depth, ptrdiff_t columns,
                                float *packed) {
    for (ptrdiff_t first = 0; first < columns; first += SWIFTCAM_GEMM_TILE_COLUMNS) {
        const float *source = b + first;  // (depth, 48), rows `stride` apart
        ptrdiff_t width = columns - first;
        if (width >= SWIFTCAM_GEMM_TILE_COLUMNS) {
            for (ptrdiff_t k = 0; k < depth; k++, source += stride, packed += SWIFTCAM_GEMM_TILE_COLUMNS) {
                _mm512_storeu_ps(packed, _mm512_loadu_ps(source));
                _mm512_storeu_ps(packed + 16, _mm512_loadu_ps(source + 16));
                _mm512_storeu_ps(packed + 32, _mm512_loadu_ps(source + 32));
            }
        } else {
            __mmask16 m0 = lane_mask(width, 0), m1 = lane_mask(width, 1), m2 = lane_mask(width, 2);
            for (ptrdiff_t k = 0; k < depth; k++, source += stride, packed += SWIFTCAM_GEMM_TILE_COLUMNS) {
                _mm512_storeu_ps(packed, _mm512_maskz_loadu_ps(m0, source));
                _mm512_storeu_ps(packed + 16, _mm512_maskz_loadu_ps(m1, source + 16));
                _mm512_storeu_ps(packed + 32, _mm512_maskz_loadu_ps(m2, source + 32));
            }
        }
    }
}

/// The tile kernel for VECTORS (1...3) vectors of columns; a constant after inlining, so the
/// accumulator arrays become registers.
KERNEL_TARGET __attribute__((always_inline)) static inline void tile_kernel(
    const int VECTORS, const float *panel, const float *tile, ptrdiff_t depth,
    float *c, ptrdiff_t c_stride, ptrdiff_t rows, ptrdiff_t columns, int accumulate,
    const swiftcam_gemm_epilogue *epilogue) {
    enum { ROWS = SWIFTCAM_GEMM_PANEL_ROWS, WIDTH = SWIFTCAM_GEMM_TILE_COLUMNS };
    // Start fetching the C tile now; it is read (accumulate, residual) and written at the end.
    for (ptrdiff_t r = 0; r < rows; r++) {
        for (int v = 0; v < VECTORS; v++) _mm_prefetch((const char *)(c + r * c_stride + 16 * v), _MM_HINT_T0);
    }
    __m512 sum[ROWS][3];  // (8, 16 * VECTORS) of the tile
    for (int r = 0; r < ROWS; r++) {
        for (int v = 0; v < VECTORS; v++) sum[r][v] = _mm512_setzero_ps();
    }
    for (ptrdiff_t k = 0; k < depth; k++, panel += ROWS, tile += WIDTH) {
        if ((k & 1) == 0) _mm_prefetch((const char *)(panel + PREFETCH_AHEAD), _MM_HINT_T0);  // a line per 2 steps
        __m512 column[3];
        for (int v = 0; v < VECTORS; v++) column[v] = _mm512_loadu_ps(tile + 16 * v);
        for (int r = 0; r < ROWS; r++) {
            __m512 weight = _mm512_set1_ps(panel[r]);
            for (int v = 0; v < VECTORS; v++) sum[r][v] = _mm512_fmadd_ps(weight, column[v], sum[r][v]);
        }
    }
    __mmask16 mask[3];
    for (int v = 0; v < VECTORS; v++) mask[v] = lane_mask(columns, v);
    for (int r = 0; r < ROWS && r < rows; r++) {
        float *row = c + r * c_stride;
        for (int v = 0; v < VECTORS; v++) {
            __m512 value = sum[r][v];
            if (accumulate) value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask[v], row + 16 * v));
            if (epilogue) {
                // Same order as the separate pass (Elementwise.swift): (x + bias) + residual, then ReLU.
                if (epilogue->bias) value = _mm512_add_ps(value, _mm512_set1_ps(epilogue->bias[r]));
                if (epilogue->residual) {
                    const float *shortcut = epilogue->residual + r * epilogue->residual_stride + 16 * v;
                    value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask[v], shortcut));
                }
                if (epilogue->relu) value = _mm512_max_ps(value, _mm512_setzero_ps());
            }
            _mm512_mask_storeu_ps(row + 16 * v, mask[v], value);
        }
    }
}

void swiftcam_gemm_tile(const float *packed_panel, const float *packed_tile, ptrdiff_t depth,
                        float *c, ptrdiff_t c_stride, ptrdiff_t rows, ptrdiff_t columns, int accumulate,
                        const swiftcam_gemm_epilogue *epilogue) KERNEL_TARGET;
void swiftcam_gemm_tile(const float *packed_panel, const float *packed_tile, ptrdiff_t depth,
                        float *c, ptrdiff_t c_stride, ptrdiff_t rows, ptrdiff_t columns, int accumulate,
                        const swiftcam_gemm_epilogue *epilogue) {
    if (columns > 32) {
        tile_kernel(3, packed_panel, packed_tile, depth, c, c_stride, rows, columns, accumulate, epilogue);
    } else if (columns > 16) {
        tile_kernel(2, packed_panel, packed_tile, depth, c, c_stride, rows, columns, accumulate, epilogue);
    } else {
        tile_kernel(1, packed_panel, packed_tile, depth, c, c_stride, rows, columns, accumulate, epilogue);
    }
}

void swiftcam_gemm_panels(const float *packed_panels, ptrdiff_t panel_stride, const float *packed_tile,
                          ptrdiff_t depth, float *c, ptrdiff_t c_stride, ptrdiff_t rows, ptrdiff_t columns,
                          int accumulate, const swiftcam_gemm_epilogue *epilogue) KERNEL_TARGET;
void swiftcam_gemm_panels(const float *packed_panels, ptrdiff_t panel_stride, const float *packed_tile,
                          ptrdiff_t depth, float *c, ptrdiff_t c_stride, ptrdiff_t rows, ptrdiff_t columns,
                          int accumulate, const swiftcam_gemm_epilogue *epilogue) {
    swiftcam_gemm_epilogue shifted;
    if (epilogue) shifted = *epilogue;
    for (ptrdiff_t row = 0; row < rows; row += SWIFTCAM_GEMM_PANEL_ROWS) {
        ptrdiff_t panel_rows = rows - row < SWIFTCAM_GEMM_PANEL_ROWS ? rows - row : SWIFTCAM_GEMM_PANEL_ROWS;
        const float *panel = packed_panels + (row / SWIFTCAM_GEMM_PANEL_ROWS) * panel_stride;
        if (epilogue) {
            shifted.bias = epilogue->bias ? epilogue->bias + row : NULL;
            shifted.residual = epilogue->residual ? epilogue->residual + row * epilogue->residual_stride : NULL;
        }
        swiftcam_gemm_tile(panel, packed_tile, depth, c + row * c_stride, c_stride, panel_rows, columns,
                           accumulate, epilogue ? &shifted : NULL);
    }
}

#else  // not x86-64: the kernel does not exist; swiftcam uses OpenBLAS alone.

int swiftcam_gemm_kernel_available(void) { return 0; }

void swiftcam_gemm_pack_columns(const float *b, ptrdiff_t stride, ptrdiff_t depth, ptrdiff_t columns,
                                float *packed) {
    (void)b; (void)stride; (void)depth; (void)columns; (void)packed;
}

void swiftcam_gemm_tile(const float *packed_panel, const float *packed_tile, ptrdiff_t depth,
                        float *c, ptrdiff_t c_stride, ptrdiff_t rows, ptrdiff_t columns, int accumulate,
                        const swiftcam_gemm_epilogue *epilogue) {
    (void)packed_panel; (void)packed_tile; (void)depth; (void)c; (void)c_stride; (void)rows;
    (void)columns; (void)accumulate; (void)epilogue;
}

void swiftcam_gemm_panels(const float *packed_panels, ptrdiff_t panel_stride, const float *packed_tile,
                          ptrdiff_t depth, float *c, ptrdiff_t c_stride, ptrdiff_t rows, ptrdiff_t columns,
                          int accumulate, const swiftcam_gemm_epilogue *epilogue) {
    (void)packed_panels; (void)panel_stride; (void)packed_tile; (void)depth; (void)c; (void)c_stride;
    (void)rows; (void)columns; (void)accumulate; (void)epilogue;
}

#endif
