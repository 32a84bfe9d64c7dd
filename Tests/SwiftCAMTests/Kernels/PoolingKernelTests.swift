// PoolingKernelTests: max pooling against a padded direct reference (values, argmax indices, torch's
// tie and NaN rules) and finite differences; adaptive average pooling with hand-listed bins for
// non-divisible sizes, the adjoint identity and finite differences.

import SwiftCAM
import XCTest

final class PoolingKernelTests: XCTestCase {
    struct MaxCase { var height, width, kernel, stride, padding: Int }

    static let maxCases: [MaxCase] = [
        MaxCase(height: 13, width: 9, kernel: 3, stride: 2, padding: 1),  // the ResNet stem pool
        MaxCase(height: 7, width: 6, kernel: 2, stride: 2, padding: 0),
        MaxCase(height: 5, width: 5, kernel: 3, stride: 1, padding: 1),  // overlapping windows
        MaxCase(height: 10, width: 8, kernel: 3, stride: 3, padding: 0),  // remainder dropped
        MaxCase(height: 4, width: 3, kernel: 1, stride: 1, padding: 0),
        MaxCase(height: 6, width: 11, kernel: 5, stride: 2, padding: 2),
    ]
    static let batch = 2, channels = 3

    /// Distinct values `k * 0.05` in shuffled order: no ties, and every gap is far wider than the
    /// finite-difference step, so no perturbation changes an argmax.
    static func distinctValues(_ count: Int, random: inout KernelTestRandom) -> [Float] {
        (0..<count).map { Float($0) * 0.05 - 1 }.shuffled(using: &random)
    }

    static func maxPool(_ c: MaxCase, _ input: [Float]) -> (output: [Float], indices: [Int32]) {
        let size = MaxPool2d.outputSize(
            height: c.height, width: c.width, kernel: c.kernel, stride: c.stride, padding: c.padding)!
        let count = batch * channels * size.height * size.width
        var output = [Float](repeating: .nan, count: count), indices = [Int32](repeating: -1, count: count)
        indices.withUnsafeMutableBufferPointer { indices in
            maxPool2dForward(
                output: &output, indices: indices.baseAddress, input: input,
                batch: batch, channels: channels, height: c.height, width: c.width,
                kernel: c.kernel, stride: c.stride, padding: c.padding)
        }
        return (output, indices)
    }

    /// Scans each window of an explicitly -inf-padded plane with torch's rule (`>` or NaN).
    static func referenceMaxPool(_ c: MaxCase, _ input: [Float]) -> (output: [Float], indices: [Int32]) {
        let paddedHeight = c.height + 2 * c.padding, paddedWidth = c.width + 2 * c.padding
        let outputHeight = (paddedHeight - c.kernel) / c.stride + 1
        let outputWidth = (paddedWidth - c.kernel) / c.stride + 1
        var output: [Float] = [], indices: [Int32] = []
        for plane in 0..<batch * channels {
            var padded = [Float](repeating: -.infinity, count: paddedHeight * paddedWidth)
            for y in 0..<c.height {
                for x in 0..<c.width {
                    padded[(y + c.padding) * paddedWidth + x + c.padding] = input[(plane * c.height + y) * c.width + x]
                }
            }
            for oy in 0..<outputHeight {
                for ox in 0..<outputWidth {
                    var best = -Float.infinity, bestIndex = -1
                    for y in oy * c.stride..<oy * c.stride + c.kernel {
                        for x in ox * c.stride..<ox * c.stride + c.kernel {
                            let inside = (c.padding..<c.padding + c.height).contains(y)
                                && (c.padding..<c.padding + c.width).contains(x)
                            let value = padded[y * paddedWidth + x]
                            if inside && (bestIndex < 0 || value > best || value.isNaN) {
                                best = value
                                bestIndex = (y - c.padding) * c.width + x - c.padding
                            }
                        }
                    }
                    output.append(best)
                    indices.append(Int32(bestIndex))
                }
            }
        }
        return (output, indices)
    }

    /// The values-only pass (no indices, used by inference) agrees with the reference, NaN included.
    func testMaxPoolWithoutIndicesMatchesReference() {
        var random = KernelTestRandom(seed: 7)
        for c in Self.maxCases {
            var input = Self.distinctValues(Self.batch * Self.channels * c.height * c.width, random: &random)
            input[c.width + 1] = .nan
            let expected = Self.referenceMaxPool(c, input).output
            var output = [Float](repeating: 42, count: expected.count)
            maxPool2dForward(output: &output, indices: nil, input: input, batch: Self.batch, channels: Self.channels,
                             height: c.height, width: c.width, kernel: c.kernel, stride: c.stride, padding: c.padding)
            XCTAssertEqual(output.map(\.bitPattern), expected.map(\.bitPattern), "\(c)")
            XCTAssertTrue(output.contains { $0.isNaN }, "\(c): NaN must propagate")
        }
    }

    func testMaxPoolOutputSize() {
        XCTAssert(MaxPool2d.outputSize(height: 112, width: 111, kernel: 3, stride: 2, padding: 1)! == (56, 56))
        XCTAssert(MaxPool2d.outputSize(height: 10, width: 8, kernel: 3, stride: 3, padding: 0)! == (3, 2))
        XCTAssertNil(MaxPool2d.outputSize(height: 8, width: 8, kernel: 3, stride: 1, padding: 2))
        XCTAssertNil(MaxPool2d.outputSize(height: 2, width: 8, kernel: 3, stride: 1, padding: 0))
    }

    func testMaxPoolForwardMatchesReference() {
        var random = KernelTestRandom(seed: 20)
        for c in Self.maxCases {
            let input = Self.distinctValues(Self.batch * Self.channels * c.height * c.width, random: &random)
            let actual = Self.maxPool(c, input), expected = Self.referenceMaxPool(c, input)
            XCTAssertEqual(actual.output, expected.output, "\(c)")
            XCTAssertEqual(actual.indices, expected.indices, "\(c)")
        }
    }

    /// Equal maxima: torch keeps the first in row-major scan order (and the first valid position
    /// when everything is -inf); a NaN anywhere in a window wins.
    func testMaxPoolTiesAndNaNFollowTorch() {
        let c = MaxCase(height: 4, width: 4, kernel: 3, stride: 2, padding: 1)
        let planeCount = Self.batch * Self.channels * 16
        for fill in [Float(0.5), -.infinity] {
            let result = Self.maxPool(c, [Float](repeating: fill, count: planeCount))
            // Windows start at rows/cols (-1, 1): first valid positions (0,0) (0,1) (1,0) (1,1).
            XCTAssertEqual(Array(result.indices.prefix(4)), [0, 1, 4, 5], "fill \(fill)")
            XCTAssert(result.output.allSatisfy { $0 == fill })
        }
        var input = [Float](repeating: 1, count: planeCount)
        input[5] = .nan  // (1, 1): in all four windows of plane 0
        input[16 + 3] = 2  // plane 1, (0, 3): only in windows (0, 1)
        input[16 + 7] = 2  // plane 1, (1, 3): equal maximum later in scan order
        let result = Self.maxPool(c, input), expected = Self.referenceMaxPool(c, input)
        XCTAssert(result.output.prefix(4).allSatisfy(\.isNaN))
        XCTAssertEqual(Array(result.indices.prefix(8)), [5, 5, 5, 5, 0, 3, 4, 7])
        XCTAssertEqual(result.indices, expected.indices)
    }

    func testMaxPoolBackwardScattersToArgmax() {
        var random = KernelTestRandom(seed: 21)
        for c in Self.maxCases {
            let inputCount = Self.batch * Self.channels * c.height * c.width
            let input = Self.distinctValues(inputCount, random: &random)
            let forward = Self.maxPool(c, input)
            let size = MaxPool2d.outputSize(
                height: c.height, width: c.width, kernel: c.kernel, stride: c.stride, padding: c.padding)!
            let outputGradient = random.floats(forward.output.count)
            var gradient = [Float](repeating: .nan, count: inputCount)
            maxPool2dBackward(
                inputGradient: &gradient, outputGradient: outputGradient, indices: forward.indices,
                batch: Self.batch, channels: Self.channels, inputHeight: c.height, inputWidth: c.width,
                outputHeight: size.height, outputWidth: size.width)
            var expected = [Double](repeating: 0, count: inputCount)
            let outputPlane = size.height * size.width
            for (o, index) in forward.indices.enumerated() {
                expected[(o / outputPlane) * c.height * c.width + Int(index)] += Double(outputGradient[o])
            }
            KernelTestSupport.assertClose(gradient, expected, relativeTo: 1e-6, "\(c)")
            KernelTestSupport.assertFiniteDifferences(
                input: input, outputGradient: outputGradient, gradient: gradient,
                probes: Array(0..<inputCount), forward: { Self.maxPool(c, $0).output })
        }
    }

    // MARK: Adaptive average pooling

    static func adaptivePool(_ input: [Float], planes: Int, _ h: Int, _ w: Int, to oh: Int, _ ow: Int) -> [Float] {
        var output = [Float](repeating: .nan, count: planes * oh * ow)
        adaptiveAvgPool2dForward(
            output: &output, input: input, batch: 1, channels: planes, height: h, width: w,
            outputHeight: oh, outputWidth: ow)
        return output
    }

    static func adaptivePoolBackward(_ g: [Float], planes: Int, _ h: Int, _ w: Int, from oh: Int, _ ow: Int) -> [Float] {
        var gradient = [Float](repeating: .nan, count: planes * h * w)
        adaptiveAvgPool2dBackward(
            inputGradient: &gradient, outputGradient: g, batch: 1, channels: planes, height: h, width: w,
            outputHeight: oh, outputWidth: ow)
        return gradient
    }

    /// Mean of `input` (one h x w plane per entry of `planes`) over hand-listed row and column bins.
    static func binMeans(_ input: [Float], planes: Int, width: Int, height: Int, rows: [[Int]], cols: [[Int]]) -> [Double] {
        var result: [Double] = []
        for p in 0..<planes {
            for r in rows {
                for c in cols {
                    let sum = r.flatMap { y in c.map { x in Double(input[(p * height + y) * width + x]) } }.reduce(0, +)
                    result.append(sum / Double(r.count * c.count))
                }
            }
        }
        return result
    }

    func testAdaptiveAvgPoolOneDimensionByHand() {
        // 5 -> 3: starts floor(i*5/3) = 0, 1, 3; ends ceil((i+1)*5/3) = 2, 4, 5.
        let output = Self.adaptivePool([1, 2, 3, 4, 5], planes: 1, 1, 5, to: 1, 3)
        XCTAssertEqual(output, [1.5, 3, 4.5])
    }

    func testAdaptiveAvgPoolNonDivisibleSizes() {
        var random = KernelTestRandom(seed: 22)
        let planes = 4
        // 7x5 -> 3x2. Rows: starts 0, 2, 4; ends ceil(7/3)=3, ceil(14/3)=5, 7. Cols: 0, 2; 3, 5.
        var input = random.floats(planes * 35)
        KernelTestSupport.assertClose(
            Self.adaptivePool(input, planes: planes, 7, 5, to: 3, 2),
            Self.binMeans(input, planes: planes, width: 5, height: 7,
                          rows: [[0, 1, 2], [2, 3, 4], [4, 5, 6]], cols: [[0, 1, 2], [2, 3, 4]]),
            relativeTo: 1e-6, "7x5 -> 3x2")
        // 7x5 -> 1x1: the global mean.
        KernelTestSupport.assertClose(
            Self.adaptivePool(input, planes: planes, 7, 5, to: 1, 1),
            Self.binMeans(input, planes: planes, width: 5, height: 7, rows: [Array(0..<7)], cols: [Array(0..<5)]),
            relativeTo: 1e-6, "7x5 -> 1x1")
        // 3x2 -> 5x4 (upsampling). Rows: starts floor(3i/5) = 0,0,1,1,2; ends ceil(3(i+1)/5) = 1,2,2,3,3.
        // Cols: starts floor(2i/4) = 0,0,1,1; ends ceil(2(i+1)/4) = 1,1,2,2.
        input = random.floats(planes * 6)
        KernelTestSupport.assertClose(
            Self.adaptivePool(input, planes: planes, 3, 2, to: 5, 4),
            Self.binMeans(input, planes: planes, width: 2, height: 3,
                          rows: [[0], [0, 1], [1], [1, 2], [2]], cols: [[0], [0], [1], [1]]),
            relativeTo: 1e-6, "3x2 -> 5x4")
    }

    func testAdaptiveAvgPoolBackwardIsAdjointAndMatchesFiniteDifferences() {
        var random = KernelTestRandom(seed: 23)
        let planes = 3
        for (h, w, oh, ow) in [(7, 5, 3, 2), (7, 5, 1, 1), (3, 2, 5, 4), (7, 7, 7, 7)] {
            let forward = { Self.adaptivePool($0, planes: planes, h, w, to: oh, ow) }
            let backward = { Self.adaptivePoolBackward($0, planes: planes, h, w, from: oh, ow) }
            KernelTestSupport.assertAdjoint(
                inputCount: planes * h * w, outputCount: planes * oh * ow, seed: UInt64(h * 100 + oh),
                forward: forward, backward: backward)
            let input = random.floats(planes * h * w), g = random.floats(planes * oh * ow)
            KernelTestSupport.assertFiniteDifferences(
                input: input, outputGradient: g, gradient: backward(g),
                probes: Array(0..<planes * h * w), forward: forward)
        }
    }
}
