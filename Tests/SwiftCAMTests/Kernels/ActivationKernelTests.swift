// ActivationKernelTests: ReLU forward/backward and guided ReLU backward on hand-written values,
// in place, and the ReLU backward against finite differences away from the kink at 0.

import SwiftCAM
import XCTest

final class ActivationKernelTests: XCTestCase {
    func testReLUForward() {
        let input: [Float] = [-2, -0.5, 0, 0.25, 3, -.infinity, .infinity]
        var output = [Float](repeating: .nan, count: input.count)
        reluForward(output: &output, input: input, count: input.count)
        XCTAssertEqual(output, [0, 0, 0, 0.25, 3, 0, .infinity])
    }

    func testReLUForwardInPlace() {
        var values: [Float] = [-1, 2, -3, 4, 0.5]
        values.withUnsafeMutableBufferPointer { buffer in
            reluForward(output: buffer.baseAddress!, input: buffer.baseAddress!, count: buffer.count)
        }
        XCTAssertEqual(values, [0, 2, 0, 4, 0.5])
    }

    /// The mask comes from the forward output (third argument), not from the gradient's sign.
    func testReLUBackwardMasksWithForwardOutput() {
        let output: [Float] = [0, 1.5, 0, 0.1, 7, 0]
        let outputGradient: [Float] = [5, -2, -3, 4, 0.5, 9]
        var inputGradient = [Float](repeating: .nan, count: output.count)
        reluBackward(
            inputGradient: &inputGradient, outputGradient: outputGradient, output: output, count: output.count)
        XCTAssertEqual(inputGradient, [0, -2, 0, 4, 0.5, 0])
    }

    func testReLUBackwardInPlace() {
        let output: [Float] = [1, 0, 2, 0]
        var gradient: [Float] = [-1, -2, -3, -4]
        gradient.withUnsafeMutableBufferPointer { buffer in
            reluBackward(
                inputGradient: buffer.baseAddress!, outputGradient: buffer.baseAddress!, output: output,
                count: buffer.count)
        }
        XCTAssertEqual(gradient, [-1, 0, -3, 0])
    }

    func testGuidedReLUBackwardNeedsPositiveOutputAndGradient() {
        let output: [Float] = [1, 1, 0, 0, 2, 3]
        var gradient: [Float] = [2, -2, 3, -3, 0, 0.5]
        gradient.withUnsafeMutableBufferPointer { buffer in
            guidedReLUBackward(
                inputGradient: buffer.baseAddress!, outputGradient: buffer.baseAddress!, output: output,
                count: buffer.count)
        }
        XCTAssertEqual(gradient, [2, 0, 0, 0, 0, 0.5])
    }

    /// Inputs are kept at |x| >= 0.1, far from the kink compared with the 2^-7 step.
    func testReLUBackwardMatchesFiniteDifferences() {
        var random = KernelTestRandom(seed: 10)
        let count = 200
        let input = random.floats(count, in: 0.1...1).map { Bool.random(using: &random) ? $0 : -$0 }
        let relu: ([Float]) -> [Float] = { x in
            var y = [Float](repeating: .nan, count: x.count)
            reluForward(output: &y, input: x, count: x.count)
            return y
        }
        let outputGradient = random.floats(count)
        var inputGradient = [Float](repeating: .nan, count: count)
        reluBackward(
            inputGradient: &inputGradient, outputGradient: outputGradient, output: relu(input), count: count)
        KernelTestSupport.assertFiniteDifferences(
            input: input, outputGradient: outputGradient, gradient: inputGradient,
            probes: Array(0..<count), forward: relu)
    }
}
