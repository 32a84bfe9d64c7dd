// Conv2dKernelTests: conv2dForward against a direct-loop Double reference over many shapes, and
// conv2dBackwardInput against a direct reference, the adjoint identity and finite differences.

import SwiftCAM
import XCTest

final class Conv2dKernelTests: XCTestCase {
    struct Case {
        var shape: Conv2dShape
        var height: Int, width: Int
        var batch = 2
    }

    /// Strides 1/2/3, padding 0/1/2/3 (also beyond the kernel's reach), dilation 1/2/3, groups 1/2/4,
    /// kernels 1x1/3x3/5x5/7x7/3x1/2x3, odd and tiny inputs, batch 2 (1 for the largest).
    static let cases: [Case] = [
        Case(shape: Conv2dShape(inChannels: 8, outChannels: 6, kernelSize: 1), height: 5, width: 7),
        Case(shape: Conv2dShape(inChannels: 8, outChannels: 4, kernelSize: 1, groups: 2), height: 6, width: 5),
        Case(shape: Conv2dShape(inChannels: 6, outChannels: 4, kernelSize: 1, stride: 2), height: 13, width: 9),
        Case(shape: Conv2dShape(inChannels: 3, outChannels: 2, kernelSize: 1, padding: 1), height: 4, width: 3),
        Case(shape: Conv2dShape(inChannels: 5, outChannels: 7, kernelSize: 3, padding: 1), height: 13, width: 9),
        Case(shape: Conv2dShape(inChannels: 4, outChannels: 6, kernelSize: 3, stride: 2, padding: 1), height: 13, width: 9),
        Case(shape: Conv2dShape(inChannels: 3, outChannels: 5, kernelSize: 3, dilation: 2), height: 13, width: 9),
        Case(shape: Conv2dShape(inChannels: 4, outChannels: 4, kernelSize: 3, padding: 2, dilation: 2), height: 9, width: 13),
        Case(shape: Conv2dShape(inChannels: 3, outChannels: 8, kernelSize: 7, stride: 2, padding: 3), height: 13, width: 9),
        Case(shape: Conv2dShape(inChannels: 4, outChannels: 6, kernelSize: 3, padding: 1, groups: 2), height: 7, width: 8),
        Case(shape: Conv2dShape(inChannels: 8, outChannels: 8, kernelSize: 3, stride: 2, padding: 1, groups: 4), height: 11, width: 10),
        Case(shape: Conv2dShape(inChannels: 2, outChannels: 3, kernelSize: 3, padding: 3), height: 5, width: 4),
        Case(shape: Conv2dShape(inChannels: 3, outChannels: 4, kernelSize: 3, stride: 2, padding: 1), height: 2, width: 2),
        Case(shape: Conv2dShape(inChannels: 4, outChannels: 3, kernelSize: 5, stride: 3, padding: 2), height: 13, width: 9),
        Case(
            shape: Conv2dShape(
                inChannels: 4, outChannels: 6, kernelHeight: 3, kernelWidth: 1, strideHeight: 2, strideWidth: 1,
                paddingHeight: 0, paddingWidth: 1, dilationHeight: 1, dilationWidth: 3, groups: 2),
            height: 9, width: 6),
        Case(
            shape: Conv2dShape(
                inChannels: 2, outChannels: 2, kernelHeight: 2, kernelWidth: 3, strideHeight: 1, strideWidth: 3,
                paddingHeight: 1, paddingWidth: 2, dilationHeight: 3, dilationWidth: 2),
            height: 6, width: 11),
        // Large enough for the column matrix to be unfolded in several bands of output rows
        // (4, 2 and 3 bands with a 2^18-float band budget), including bands that start or end in the
        // padding and a last, shorter band.
        Case(shape: Conv2dShape(inChannels: 64, outChannels: 4, kernelSize: 3, padding: 1), height: 40, width: 37, batch: 1),
        Case(
            shape: Conv2dShape(inChannels: 32, outChannels: 4, kernelSize: 5, stride: 2, padding: 2, groups: 2),
            height: 61, width: 45, batch: 1),
        Case(shape: Conv2dShape(inChannels: 3, outChannels: 4, kernelSize: 7, stride: 2, padding: 3), height: 150, width: 120, batch: 1),
        // For the packed kernel: more weight rows than one block (256) ending in a partial panel of
        // 8, depth in three blocks (360 = 128 + 128 + 104), a narrow product (49 columns) whose B is
        // packed once and whose blocks of rows the threads share;
        // and the same side by side for a batch.
        Case(shape: Conv2dShape(inChannels: 40, outChannels: 270, kernelSize: 3, padding: 1), height: 7, width: 7, batch: 1),
        Case(shape: Conv2dShape(inChannels: 40, outChannels: 270, kernelSize: 3, padding: 1), height: 7, width: 7, batch: 3),
    ]

    // MARK: Array wrappers with guard zones

    static let guardCount = 16
    static let sentinel: Float = 12345

    /// Runs conv2dForward on a NaN-filled output (so every output must be written) and a workspace of
    /// exactly `workspaceCount` floats, failing if either buffer is written past its end; on
    /// swiftcam's own GEMM kernel when `packedWeight` is given, else on OpenBLAS.
    static func forward(
        _ c: Case, input: [Float], weight: [Float], bias: [Float]?, applyReLU: Bool,
        packedWeight: PackedWeights? = nil, file: StaticString = #filePath, line: UInt = #line
    ) -> [Float] {
        let (outputHeight, outputWidth) = c.shape.outputSize(height: c.height, width: c.width)!
        let outputCount = c.batch * c.shape.outChannels * outputHeight * outputWidth
        let workspaceCount = c.shape.workspaceCount(height: c.height, width: c.width, batch: c.batch)
        var output = [Float](repeating: .nan, count: outputCount + guardCount)
        var workspace = [Float](repeating: sentinel, count: workspaceCount + guardCount)
        output.withUnsafeMutableBufferPointer { output in
            workspace.withUnsafeMutableBufferPointer { workspace in
                func run(_ bias: UnsafePointer<Float>?) {
                    conv2dForward(
                        output: output.baseAddress!, input: input, weight: weight, packedWeight: packedWeight, bias: bias,
                        batch: c.batch, height: c.height, width: c.width, shape: c.shape,
                        applyReLU: applyReLU, workspace: UnsafeMutableBufferPointer(rebasing: workspace[..<workspaceCount]))
                }
                if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
            }
        }
        XCTAssert(output[outputCount...].allSatisfy(\.isNaN), "output overrun", file: file, line: line)
        XCTAssert(workspace[workspaceCount...].allSatisfy { $0 == sentinel }, "workspace overrun", file: file, line: line)
        return Array(output[..<outputCount])
    }

    /// Runs conv2dBackwardInput on a NaN-filled input gradient (it must be overwritten, not added to).
    static func backward(
        _ c: Case, outputGradient: [Float], weight: [Float],
        file: StaticString = #filePath, line: UInt = #line
    ) -> [Float] {
        let inputCount = c.batch * c.shape.inChannels * c.height * c.width
        let workspaceCount = c.shape.workspaceCount(height: c.height, width: c.width, batch: c.batch)
        var gradient = [Float](repeating: .nan, count: inputCount + guardCount)
        var workspace = [Float](repeating: sentinel, count: workspaceCount + guardCount)
        conv2dBackwardInput(
            inputGradient: &gradient, outputGradient: outputGradient, weight: weight,
            batch: c.batch, height: c.height, width: c.width, shape: c.shape, workspace: &workspace)
        XCTAssert(gradient[inputCount...].allSatisfy(\.isNaN), "gradient overrun", file: file, line: line)
        XCTAssert(workspace[workspaceCount...].allSatisfy { $0 == sentinel }, "workspace overrun", file: file, line: line)
        return Array(gradient[..<inputCount])
    }

    // MARK: Direct-loop references in Double

    /// Calls `body(n, outputIndex, inputIndex, weightIndex)` for every valid (output, tap) pair.
    static func forEachTap(_ c: Case, _ body: (Int, Int, Int) -> Void) {
        let s = c.shape
        let (outputHeight, outputWidth) = s.outputSize(height: c.height, width: c.width)!
        let groupIn = s.inChannels / s.groups, groupOut = s.outChannels / s.groups
        for n in 0..<c.batch {
            for co in 0..<s.outChannels {
                for oy in 0..<outputHeight {
                    for ox in 0..<outputWidth {
                        let outputIndex = ((n * s.outChannels + co) * outputHeight + oy) * outputWidth + ox
                        for ci in 0..<groupIn {
                            let channel = (co / groupOut) * groupIn + ci
                            for ki in 0..<s.kernelHeight {
                                let iy = oy * s.strideHeight - s.paddingHeight + ki * s.dilationHeight
                                guard iy >= 0, iy < c.height else { continue }
                                for kj in 0..<s.kernelWidth {
                                    let ix = ox * s.strideWidth - s.paddingWidth + kj * s.dilationWidth
                                    guard ix >= 0, ix < c.width else { continue }
                                    body(
                                        outputIndex,
                                        ((n * s.inChannels + channel) * c.height + iy) * c.width + ix,
                                        ((co * groupIn + ci) * s.kernelHeight + ki) * s.kernelWidth + kj)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    static func referenceForward(
        _ c: Case, input: [Float], weight: [Float], bias: [Float]?, applyReLU: Bool
    ) -> [Double] {
        let (outputHeight, outputWidth) = c.shape.outputSize(height: c.height, width: c.width)!
        let plane = outputHeight * outputWidth
        var output = (0..<c.batch * c.shape.outChannels * plane).map { i in
            bias.map { Double($0[(i / plane) % c.shape.outChannels]) } ?? 0
        }
        forEachTap(c) { o, i, w in output[o] += Double(input[i]) * Double(weight[w]) }
        return applyReLU ? output.map { max($0, 0) } : output
    }

    static func referenceBackward(_ c: Case, outputGradient: [Float], weight: [Float]) -> [Double] {
        var gradient = [Double](repeating: 0, count: c.batch * c.shape.inChannels * c.height * c.width)
        forEachTap(c) { o, i, w in gradient[i] += Double(outputGradient[o]) * Double(weight[w]) }
        return gradient
    }

    static func counts(_ c: Case) -> (input: Int, output: Int) {
        let (outputHeight, outputWidth) = c.shape.outputSize(height: c.height, width: c.width)!
        return (
            c.batch * c.shape.inChannels * c.height * c.width,
            c.batch * c.shape.outChannels * outputHeight * outputWidth
        )
    }

    // MARK: Tests

    func testShapeArithmetic() {
        let stem = Conv2dShape(inChannels: 3, outChannels: 64, kernelSize: 7, stride: 2, padding: 3)
        XCTAssert(stem.outputSize(height: 224, width: 224)! == (112, 112))
        XCTAssertEqual(stem.weightCount, 64 * 3 * 49)
        // Banded: at least one output row of the column matrix, less than all of it.
        let stemWorkspace = stem.columnWorkspaceCount(height: 224, width: 224, batch: 1)
        XCTAssert(stemWorkspace % (3 * 49 * 112) == 0 && stemWorkspace < 3 * 49 * 112 * 112, "\(stemWorkspace)")
        let small = Conv2dShape(inChannels: 3, outChannels: 4, kernelSize: 3, padding: 1)
        XCTAssertEqual(small.columnWorkspaceCount(height: 10, width: 9, batch: 1), 27 * 10 * 9)
        let pointwise = Conv2dShape(inChannels: 256, outChannels: 64, kernelSize: 1, groups: 4)
        XCTAssertEqual(pointwise.columnWorkspaceCount(height: 56, width: 56, batch: 1), 0)
        XCTAssertEqual(pointwise.weightCount, 64 * 64)
        let downsample = Conv2dShape(inChannels: 256, outChannels: 512, kernelSize: 1, stride: 2)
        XCTAssert(downsample.outputSize(height: 56, width: 55)! == (28, 28))
        let downsampleWorkspace = downsample.columnWorkspaceCount(height: 56, width: 56, batch: 1)
        XCTAssert(downsampleWorkspace % (256 * 28) == 0 && downsampleWorkspace <= 256 * 28 * 28, "\(downsampleWorkspace)")
        let dilated = Conv2dShape(inChannels: 1, outChannels: 1, kernelSize: 3, dilation: 2)
        XCTAssert(dilated.outputSize(height: 5, width: 6)! == (1, 2))
        XCTAssertNil(dilated.outputSize(height: 4, width: 6))
        XCTAssertEqual(dilated.columnWorkspaceCount(height: 4, width: 6, batch: 1), 0)
        // Small planes of several images share one product: 7x7 planes, 11 images for 512 columns.
        let layer4 = Conv2dShape(inChannels: 512, outChannels: 512, kernelSize: 3, padding: 1)
        XCTAssertEqual(layer4.imagesPerProduct(batch: 8, outputHeight: 7, outputWidth: 7), 8)
        XCTAssertEqual(layer4.imagesPerProduct(batch: 20, outputHeight: 7, outputWidth: 7), 11)
        XCTAssertEqual(layer4.imagesPerProduct(batch: 1, outputHeight: 7, outputWidth: 7), 1)
        XCTAssertEqual(layer4.imagesPerProduct(batch: 8, outputHeight: 28, outputWidth: 28), 1)
        XCTAssertEqual(layer4.columnWorkspaceCount(height: 7, width: 7, batch: 8), (512 * 9 + 512) * 8 * 49)
        XCTAssertEqual(pointwise.columnWorkspaceCount(height: 7, width: 7, batch: 3), (64 + 16) * 3 * 49)
        XCTAssert(stem.isValid)
        XCTAssertFalse(Conv2dShape(inChannels: 6, outChannels: 4, kernelSize: 3, groups: 4).isValid)
        XCTAssertFalse(Conv2dShape(inChannels: 4, outChannels: 4, kernelSize: 3, stride: 0).isValid)
    }

    /// Tolerance 1e-5 of max |output|: the reference is exact in Double, and each float32 output is a
    /// sum of at most 147 products of values in [-1, 1] whose rounding errors (2^-24 relative each,
    /// random signs) add up to ~1e-6 of the output scale; an indexing error is O(1) of it. (The
    /// largest case sums 360 products: still ~2e-6.) Both product paths: OpenBLAS and, on CPUs
    /// that run it, swiftcam's own kernel on packed weights.
    func testForwardMatchesDirectReference() throws {
        var random = KernelTestRandom(seed: 1)
        for (index, c) in Self.cases.enumerated() {
            let input = random.floats(Self.counts(c).input)
            let weight = random.floats(c.shape.weightCount)
            let bias = random.floats(c.shape.outChannels)
            let packedWeights = GemmKernel.isAvailable ? [nil, try PackedWeights(weight: weight, shape: c.shape)] : [nil]
            for packedWeight in packedWeights {
                for (withBias, applyReLU) in [(false, false), (true, false), (false, true), (true, true)] {
                    let b = withBias ? bias : nil
                    let actual = Self.forward(c, input: input, weight: weight, bias: b, applyReLU: applyReLU,
                                              packedWeight: packedWeight)
                    let expected = Self.referenceForward(c, input: input, weight: weight, bias: b, applyReLU: applyReLU)
                    KernelTestSupport.assertClose(
                        actual, expected, relativeTo: 1e-5,
                        "case \(index) \(c.shape) bias \(withBias) relu \(applyReLU) packed \(packedWeight != nil)")
                }
            }
        }
    }

    func testBackwardInputMatchesDirectReference() {
        var random = KernelTestRandom(seed: 2)
        for (index, c) in Self.cases.enumerated() {
            let outputGradient = random.floats(Self.counts(c).output)
            let weight = random.floats(c.shape.weightCount)
            KernelTestSupport.assertClose(
                Self.backward(c, outputGradient: outputGradient, weight: weight),
                Self.referenceBackward(c, outputGradient: outputGradient, weight: weight),
                relativeTo: 1e-5, "case \(index) \(c.shape)")
        }
    }

    func testBackwardInputIsAdjointOfForward() {
        var random = KernelTestRandom(seed: 3)
        for (index, c) in Self.cases.enumerated() {
            let weight = random.floats(c.shape.weightCount)
            let (inputCount, outputCount) = Self.counts(c)
            KernelTestSupport.assertAdjoint(
                inputCount: inputCount, outputCount: outputCount, seed: UInt64(100 + index),
                forward: { Self.forward(c, input: $0, weight: weight, bias: nil, applyReLU: false) },
                backward: { Self.backward(c, outputGradient: $0, weight: weight) })
        }
    }

    func testBackwardInputMatchesFiniteDifferences() {
        var random = KernelTestRandom(seed: 4)
        for c in Self.cases {
            let (inputCount, outputCount) = Self.counts(c)
            let input = random.floats(inputCount), weight = random.floats(c.shape.weightCount)
            let bias = random.floats(c.shape.outChannels)
            let outputGradient = random.floats(outputCount)
            KernelTestSupport.assertFiniteDifferences(
                input: input, outputGradient: outputGradient,
                gradient: Self.backward(c, outputGradient: outputGradient, weight: weight),
                probes: KernelTestSupport.probes(12, in: inputCount, random: &random),
                forward: { Self.forward(c, input: $0, weight: weight, bias: bias, applyReLU: false) })
        }
    }
}
