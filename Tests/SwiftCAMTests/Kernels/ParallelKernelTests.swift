// ParallelKernelTests: the worker pool runs every part exactly once (also nested and from
// concurrent callers), work is cut into covering, non-overlapping chunks, and convolutions large
// enough to be split give bit-identical results for every thread count, fused residual included.

import Dispatch
import Glibc
@testable import SwiftCAM
import Synchronization
import XCTest

final class ParallelKernelTests: XCTestCase {
    /// Runs `body` with `ComputeThreads` set to `threads`, restoring the previous count.
    private func withThreads<T>(_ threads: Int, _ body: () throws -> T) rethrows -> T {
        let previous = ComputeThreads.count
        ComputeThreads.set(threads)
        defer { ComputeThreads.set(previous) }
        return try body()
    }

    func testEveryPartRunsExactlyOnce() {
        for parts in 1...9 {
            var runs = [Int](repeating: 0, count: parts * 3)
            runs.withUnsafeMutableBufferPointer { runs in
                let base = runs.baseAddress!
                parallelFor(parts) { part in
                    base[part * 3] += 1
                    // A nested step runs on the calling thread (the pool is busy) and still runs all parts.
                    parallelFor(2) { inner in base[part * 3 + 1 + inner] += 1 }
                }
            }
            XCTAssertEqual(runs, [Int](repeating: 1, count: parts * 3), "parts \(parts)")
        }
    }

    /// Idle workers sleep after about 0.1 ms; the next step must wake one so that its two parts
    /// run at the same time (each part waits, up to 2 s, until the other has started).
    func testASleepingWorkerWakesForTheNextStep() throws {
        try XCTSkipIf(WorkerPool.shared.maximumWorkers < 1, "one core: no workers")
        try withThreads(2) {
            for _ in 0..<3 {
                usleep(20_000)
                let started = Atomic<Int>(0)
                let overlapped = Atomic<Int>(0)
                parallelFor(2) { _ in
                    started.add(1, ordering: .sequentiallyConsistent)
                    let deadline = DispatchTime.now().uptimeNanoseconds + 2_000_000_000
                    while started.load(ordering: .sequentiallyConsistent) < 2,
                          DispatchTime.now().uptimeNanoseconds < deadline {}
                    if started.load(ordering: .sequentiallyConsistent) == 2 {
                        overlapped.add(1, ordering: .sequentiallyConsistent)
                    }
                }
                XCTAssertEqual(overlapped.load(ordering: .sequentiallyConsistent), 2, "the parts did not run concurrently")
            }
        }
    }

    func testConcurrentCallersEachRunAllTheirParts() {
        let callers = 6, parts = 5, rounds = 200
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: callers * parts)
        counts.initialize(repeating: 0, count: callers * parts)
        defer { counts.deallocate() }
        nonisolated(unsafe) let shared = counts
        DispatchQueue.concurrentPerform(iterations: callers) { caller in
            for _ in 0..<rounds {
                parallelFor(parts) { part in shared[caller * parts + part] += 1 }
            }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: counts, count: callers * parts)),
                       [Int](repeating: rounds, count: callers * parts))
    }

    func testChunksCoverTheRangeWithoutOverlap() {
        for count in 0...70 {
            for parts in 1...5 {
                for alignment in [1, 4, 16] {
                    let ranges = (0..<parts).map { chunk($0, of: parts, count: count, alignment: alignment) }
                    XCTAssertEqual(ranges.flatMap { Array($0) }, Array(0..<count),
                                   "count \(count) parts \(parts) alignment \(alignment)")
                    for range in ranges where !range.isEmpty {
                        XCTAssertEqual(range.lowerBound % alignment, 0)
                    }
                }
            }
        }
    }

    /// A layer-sized convolution (its GEMM, im2col and epilogue are all split across threads) with
    /// bias, shortcut and ReLU, and its input gradient: the same bits for 1, 2 and 3 threads, and
    /// the forward pass equal to relu((conv + bias) + residual) computed step by step. On OpenBLAS
    /// and, where it runs, on swiftcam's own kernel (which splits columns here: 1,020 of them).
    func testConvolutionGivesTheSameBitsForEveryThreadCount() throws {
        let shape = Conv2dShape(inChannels: 48, outChannels: 64, kernelSize: 3, padding: 1)
        let (batch, height, width) = (2, 30, 34)
        let outputCount = batch * 64 * height * width
        var random = KernelTestRandom(seed: 7)
        let input = random.floats(batch * 48 * height * width)
        let weight = random.floats(shape.weightCount, in: -0.1...0.1)
        let bias = random.floats(64)
        let residual = random.floats(outputCount)
        let outputGradient = random.floats(outputCount)
        let packedWeights = GemmKernel.isAvailable ? [nil, try PackedWeights(weight: weight, shape: shape)] : [nil]

        for packedWeight in packedWeights {
            func forward(residual: [Float]?, applyReLU: Bool) -> [Float] {
                var output = [Float](repeating: .nan, count: outputCount)
                var workspace = [Float](repeating: .nan, count: shape.workspaceCount(height: height, width: width, batch: batch))
                func run(_ residual: UnsafePointer<Float>?) {
                    workspace.withUnsafeMutableBufferPointer { workspace in
                        conv2dForward(output: &output, input: input, weight: weight, packedWeight: packedWeight, bias: bias,
                                      residual: residual, batch: batch, height: height, width: width, shape: shape,
                                      applyReLU: applyReLU, workspace: workspace)
                    }
                }
                if let residual { residual.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
                return output
            }
            func backward() -> [Float] {
                var gradient = [Float](repeating: .nan, count: input.count)
                var workspace = [Float](repeating: .nan, count: shape.workspaceCount(height: height, width: width, batch: batch))
                conv2dBackwardInput(inputGradient: &gradient, outputGradient: outputGradient, weight: weight,
                                    batch: batch, height: height, width: width, shape: shape, workspace: &workspace)
                return gradient
            }

            let path = packedWeight == nil ? "OpenBLAS" : "packed"
            let serial = withThreads(1) { (forward(residual: residual, applyReLU: true), backward()) }
            let stepByStep = withThreads(1) { forward(residual: nil, applyReLU: false) }
            XCTAssertEqual(serial.0, zip(stepByStep, residual).map { max($0 + $1, 0) }, path)
            for threads in [2, 3] {
                let parallel = withThreads(threads) { (forward(residual: residual, applyReLU: true), backward()) }
                XCTAssertEqual(parallel.0, serial.0, "forward, \(threads) threads, \(path)")
                XCTAssertEqual(parallel.1, serial.1, "backward, \(threads) threads, \(path)")
            }
        }
    }

    /// Small planes of several images go through one GEMM (Conv2dSideBySide.swift): the result
    /// equals one image at a time up to float rounding, for 3x3 and 1x1 convolutions, with 1 and 2
    /// threads. Not bit for bit: OpenBLAS's SkylakeX kernels round a product of 100 columns and
    /// five of 20 differently (measured 1 ulp); with its generic kernels the results are identical.
    /// 1e-6 of the largest value is a few ulps at that size, while a wrong offset or stride
    /// changes values by O(1).
    func testImagesSideBySideEqualOneImageAtATime() throws {
        for shape in [Conv2dShape(inChannels: 40, outChannels: 24, kernelSize: 3, padding: 1),
                      Conv2dShape(inChannels: 40, outChannels: 24, kernelSize: 1),
                      Conv2dShape(inChannels: 40, outChannels: 24, kernelSize: 3, stride: 2, padding: 1, groups: 2)] {
            let (batch, height, width) = (5, 9, 8)
            let (outputHeight, outputWidth) = shape.outputSize(height: height, width: width)!
            XCTAssertGreaterThan(shape.imagesPerProduct(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth), 1)
            let inputCount = height * width * 40, outputCount = outputHeight * outputWidth * 24
            var random = KernelTestRandom(seed: 11)
            let input = random.floats(batch * inputCount)
            let weight = random.floats(shape.weightCount, in: -0.2...0.2)
            let bias = random.floats(24)
            let residual = random.floats(batch * outputCount)
            let outputGradient = random.floats(batch * outputCount)

            let packedWeights = GemmKernel.isAvailable ? [nil, try PackedWeights(weight: weight, shape: shape)] : [nil]

            func run(_ images: Range<Int>, _ packedWeight: PackedWeights?) -> (output: [Float], gradient: [Float]) {
                let count = images.count
                var workspace = [Float](repeating: .nan, count: shape.workspaceCount(height: height, width: width, batch: count))
                var output = [Float](repeating: .nan, count: count * outputCount)
                var gradient = [Float](repeating: .nan, count: count * inputCount)
                Array(input[images.lowerBound * inputCount..<images.upperBound * inputCount]).withUnsafeBufferPointer { x in
                    Array(residual[images.lowerBound * outputCount..<images.upperBound * outputCount]).withUnsafeBufferPointer { r in
                        workspace.withUnsafeMutableBufferPointer { workspace in
                            conv2dForward(output: &output, input: x.baseAddress!, weight: weight, packedWeight: packedWeight,
                                          bias: bias, residual: r.baseAddress, batch: count, height: height, width: width,
                                          shape: shape, applyReLU: true, workspace: workspace)
                        }
                    }
                }
                let g = Array(outputGradient[images.lowerBound * outputCount..<images.upperBound * outputCount])
                conv2dBackwardInput(inputGradient: &gradient, outputGradient: g, weight: weight, batch: count,
                                    height: height, width: width, shape: shape, workspace: &workspace)
                return (output, gradient)
            }
            for packedWeight in packedWeights { for threads in [1, 2] {
                let together = withThreads(threads) { run(0..<batch, packedWeight) }
                let separately = withThreads(threads) { (0..<batch).map { run($0..<$0 + 1, packedWeight) } }
                let path = packedWeight == nil ? "OpenBLAS" : "packed"
                assertClose(together.output, separately.flatMap(\.output), "forward \(shape), \(threads) threads, \(path)")
                assertClose(together.gradient, separately.flatMap(\.gradient), "backward \(shape), \(threads) threads, \(path)")
            } }
        }
    }

    private func assertClose(_ actual: [Float], _ expected: [Float], _ message: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, message, file: file, line: line)
        let scale = expected.map(abs).max() ?? 0
        let worst = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst, 1e-6 * scale, message, file: file, line: line)
    }
}
