// machine_peaks.c: what this machine can do at most, to put swiftcam's figures in proportion:
// the AVX-512 FMA peak (24 independent FMA chains, no memory traffic) and the memory read
// bandwidth (a 512 MB array summed), each on 1 thread and on 2 threads at once.
//
//     cc -O2 -pthread benchmarks/machine_peaks.c -o /tmp/machine_peaks && /tmp/machine_peaks
//
// (gcc or clang; the 24 accumulators must stay in registers, hence the unroll pragma.)
//
// x86-64 with AVX-512 only (the kernels are compiled for it through target attributes).
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define FMA_STEPS 50000000L
#define FLOATS (1L << 27)  // 512 MB

static float *array;
static volatile float sink;  // results land here, so that no loop is optimised away

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f,fma"))) static void *fma_chains(void *unused) {
    (void)unused;
    __m512 sum[24];
    for (int i = 0; i < 24; i++) sum[i] = _mm512_set1_ps(i * 1e-3f);
    __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-6f);
    for (long step = 0; step < FMA_STEPS; step++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) sum[i] = _mm512_fmadd_ps(sum[i], a, b);
        __asm__ volatile("" : "+v"(a));  // keep the loop
    }
    float total = 0;
    for (int i = 0; i < 24; i++) total += _mm512_reduce_add_ps(sum[i]);
    sink = total;
    return NULL;
}

__attribute__((target("avx512f"))) static void *read_half(void *half) {
    const float *start = array + (long)half * (FLOATS / 2);
    __m512 sum = _mm512_setzero_ps();
    for (long i = 0; i < FLOATS / 2; i += 16) sum = _mm512_add_ps(sum, _mm512_load_ps(start + i));
    sink = _mm512_reduce_add_ps(sum);
    return NULL;
}

/// Seconds for `body` on both halves: one thread after the other, or two threads at once.
static double timed(void *(*body)(void *), int threads, int same_work) {
    pthread_t first, second;
    double start = now();
    if (threads == 1) {
        body((void *)0L);
        if (!same_work) body((void *)1L);
    } else {
        pthread_create(&first, NULL, body, (void *)0L);
        pthread_create(&second, NULL, body, (void *)(long)(same_work ? 0 : 1));
        pthread_join(first, NULL);
        pthread_join(second, NULL);
    }
    return now() - start;
}

int main(void) {
    array = aligned_alloc(64, FLOATS * sizeof(float));
    if (!array) return 1;
    for (long i = 0; i < FLOATS; i++) array[i] = 1;
    double flops = FMA_STEPS * 24.0 * 32.0;  // 24 FMAs of 16 lanes, 2 flops each, per step
    for (int run = 0; run < 3; run++) {
        double one = timed(fma_chains, 1, 1), two = timed(fma_chains, 2, 1);
        double read_one = timed(read_half, 1, 0), read_two = timed(read_half, 2, 0);
        printf("FMA peak: %.0f GFLOP/s on 1 thread, %.0f on 2; memory read: %.1f GB/s on 1 thread, %.1f on 2\n",
               flops / one / 1e9, 2 * flops / two / 1e9, FLOATS * 4.0 / read_one / 1e9, FLOATS * 4.0 / read_two / 1e9);
    }
    free(array);
    return 0;
}
