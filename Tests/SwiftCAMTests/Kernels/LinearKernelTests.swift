// LinearKernelTests: linearForward against a Double reference (batch 1 takes the sgemv path, batch 3
// the sgemm path), and linearBackwardInput against a reference, the adjoint identity and
// finite differences.

import SwiftCAM
import XCTest

final class LinearKernelTests: XCTestCase {
    static let inFeatures = 37, outFeatures = 11

    static func forward(_ input: [Float], weight: [Float], bias: [Float]?, batch: Int) -> [Float] {
        var output = [Float](repeating: .nan, count: batch * outFeatures)
        func run(_ bias: UnsafePointer<Float>?) {
            linearForward(
                output: &output, input: input, weight: weight, bias: bias,
                batch: batch, inFeatures: inFeatures, outFeatures: outFeatures)
        }
        if let bias { bias.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
        return output
    }

    static func backward(_ outputGradient: [Float], weight: [Float], batch: Int) -> [Float] {
        var gradient = [Float](repeating: .nan, count: batch * inFeatures)
        linearBackwardInput(
            inputGradient: &gradient, outputGradient: outputGradient, weight: weight,
            batch: batch, inFeatures: inFeatures, outFeatures: outFeatures)
        return gradient
    }

    /// Tolerance 1e-5 of max |output|: 37-term float32 dot products of values in [-1, 1].
    func testForwardMatchesReference() {
        var random = KernelTestRandom(seed: 30)
        let weight = random.floats(Self.outFeatures * Self.inFeatures), bias = random.floats(Self.outFeatures)
        for batch in [1, 3] {
            let input = random.floats(batch * Self.inFeatures)
            for b in [nil, bias] {
                var expected: [Double] = []
                for n in 0..<batch {
                    for o in 0..<Self.outFeatures {
                        var sum = b.map { Double($0[o]) } ?? 0
                        for i in 0..<Self.inFeatures {
                            sum += Double(input[n * Self.inFeatures + i]) * Double(weight[o * Self.inFeatures + i])
                        }
                        expected.append(sum)
                    }
                }
                KernelTestSupport.assertClose(
                    Self.forward(input, weight: weight, bias: b, batch: batch), expected, relativeTo: 1e-5,
                    "batch \(batch) bias \(b != nil)")
            }
        }
    }

    func testBackwardInputMatchesReference() {
        var random = KernelTestRandom(seed: 31)
        let weight = random.floats(Self.outFeatures * Self.inFeatures)
        for batch in [1, 3] {
            let g = random.floats(batch * Self.outFeatures)
            var expected: [Double] = []
            for n in 0..<batch {
                for i in 0..<Self.inFeatures {
                    expected.append((0..<Self.outFeatures).reduce(0) {
                        $0 + Double(g[n * Self.outFeatures + $1]) * Double(weight[$1 * Self.inFeatures + i])
                    })
                }
            }
            KernelTestSupport.assertClose(
                Self.backward(g, weight: weight, batch: batch), expected, relativeTo: 1e-5, "batch \(batch)")
        }
    }

    func testBackwardInputIsAdjointAndMatchesFiniteDifferences() {
        var random = KernelTestRandom(seed: 32)
        let weight = random.floats(Self.outFeatures * Self.inFeatures), bias = random.floats(Self.outFeatures)
        for batch in [1, 3] {
            KernelTestSupport.assertAdjoint(
                inputCount: batch * Self.inFeatures, outputCount: batch * Self.outFeatures, seed: UInt64(batch),
                forward: { Self.forward($0, weight: weight, bias: nil, batch: batch) },
                backward: { Self.backward($0, weight: weight, batch: batch) })
            let input = random.floats(batch * Self.inFeatures), g = random.floats(batch * Self.outFeatures)
            KernelTestSupport.assertFiniteDifferences(
                input: input, outputGradient: g, gradient: Self.backward(g, weight: weight, batch: batch),
                probes: Array(0..<batch * Self.inFeatures),
                forward: { Self.forward($0, weight: weight, bias: bias, batch: batch) })
        }
    }
}
