// Parallel: swiftcam's one threading policy. Kernels split their work across `ComputeThreads.count`
// threads of one worker pool (never more than the cores at once); OpenBLAS and swiftcam's GEMM
// kernel run single-threaded inside each worker. One policy means the cores are never oversubscribed by two
// pools, and the second core is busy during im2col, bias and pooling as well, not only in GEMMs.

import COpenBLAS
import Synchronization

/// The number of threads the kernels use (process-wide).
public enum ComputeThreads {
    /// The largest accepted count.
    public static let maximum = 4096

    private static let storage = Atomic<Int>(0)  // 0: not yet initialised

    /// The current count. Initially OpenBLAS's own default (OPENBLAS_NUM_THREADS, or the number
    /// of cores); reading it first switches OpenBLAS to one thread, since the kernels split work
    /// themselves.
    public static var count: Int {
        let value = storage.load(ordering: .relaxed)
        return value > 0 ? value : initialise()
    }

    /// Sets the count; values outside 1...maximum are clamped. Also puts OpenBLAS back to one
    /// thread, in case something else in the process changed it.
    public static func set(_ count: Int) {
        openblas_set_num_threads(1)
        storage.store(min(max(count, 1), maximum), ordering: .relaxed)
    }

    private static func initialise() -> Int {
        let blasDefault = min(max(Int(openblas_get_num_threads()), 1), maximum)
        openblas_set_num_threads(1)
        let (exchanged, original) = storage.compareExchange(expected: 0, desired: blasDefault, ordering: .relaxed)
        return exchanged ? blasDefault : original
    }
}

/// Runs `body(part)` for every part in `0..<parts`, in parallel when there is more than one part
/// (on the worker pool, see WorkerPool.swift). The parts must write disjoint memory.
@inline(__always)
func parallelFor(_ parts: Int, _ body: (Int) -> Void) {
    if parts <= 1 {
        if parts == 1 { body(0) }
        return
    }
    WorkerPool.shared.run(parts: parts, body)
}

/// Splits `0..<count` into at most `parts` contiguous ranges whose bounds are multiples of
/// `alignment` (except the end), and returns the range of part `index` (empty when none is left).
@inline(__always)
func chunk(_ index: Int, of parts: Int, count: Int, alignment: Int = 1) -> Range<Int> {
    let units = (count + alignment - 1) / alignment
    let perPart = (units + parts - 1) / parts
    let start = min(count, index * perPart * alignment)
    return start..<min(count, start + perPart * alignment)
}

/// How many parts a piece of work of `cost` (roughly, floats touched or multiply-adds) is worth
/// splitting into: one below `minimumCostPerPart` per part, so that tiny layers do not pay the
/// hand-off to another thread (microseconds, more when a worker has gone to sleep).
@inline(__always)
func partCount(cost: Int, minimumCostPerPart: Int) -> Int {
    max(1, min(ComputeThreads.count, cost / max(1, minimumCostPerPart)))
}

/// Runs `body` on contiguous ranges covering `0..<count`, in parallel when the work (`costPerItem`
/// floats touched per item) is large enough to be worth a second thread.
@inline(__always)
func forEachRange(of count: Int, costPerItem: Int, alignment: Int = 1, _ body: (Range<Int>) -> Void) {
    let parts = partCount(cost: count * costPerItem, minimumCostPerPart: 1 << 15)
    parallelFor(parts) { part in
        let range = chunk(part, of: parts, count: count, alignment: alignment)
        if !range.isEmpty { body(range) }
    }
}

/// `C (m, n) = op(A) · B + beta C`, row-major, split across threads along the larger of m and n
/// (so the operand that every part must pack again is the smaller one). `op(A)` is A (m, k) with
/// leading dimension `lda`, or, when `transposeA`, the transpose of A (k, m).
func parallelSgemm(
    transposeA: Bool, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    let parts = partCount(cost: m * n * k, minimumCostPerPart: 1 << 20)
    let splitRows = m >= n
    parallelFor(parts) { part in
        // The SkylakeX kernels work on 16-wide panels: keep the cuts on multiples of 16.
        let range = chunk(part, of: parts, count: splitRows ? m : n, alignment: 16)
        guard !range.isEmpty else { return }
        let rows = splitRows ? range : 0..<m
        let columns = splitRows ? 0..<n : range
        let aStart = transposeA ? a + rows.lowerBound : a + rows.lowerBound * lda
        cblas_sgemm(
            CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, CblasNoTrans,
            blasint(rows.count), blasint(columns.count), blasint(k),
            1, aStart, blasint(lda), b + columns.lowerBound, blasint(ldb),
            beta, c + rows.lowerBound * ldc + columns.lowerBound, blasint(ldc))
    }
}
