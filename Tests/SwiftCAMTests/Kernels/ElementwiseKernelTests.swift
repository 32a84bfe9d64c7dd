// ElementwiseKernelTests: residual addition (with ReLU, in place) and the per-channel affine map
// forward (with ReLU, in place) and backward (reference, adjoint, finite differences).

import SwiftCAM
import XCTest

final class ElementwiseKernelTests: XCTestCase {
    func testAddForward() {
        let lhs: [Float] = [1, -2, 3, -4], rhs: [Float] = [0.5, 1, -5, 2]
        var output = [Float](repeating: .nan, count: 4)
        addForward(output: &output, lhs: lhs, rhs: rhs, count: 4, applyReLU: false)
        XCTAssertEqual(output, [1.5, -1, -2, -2])
        addForward(output: &output, lhs: lhs, rhs: rhs, count: 4, applyReLU: true)
        XCTAssertEqual(output, [1.5, 0, 0, 0])
    }

    func testAddForwardInPlaceOnLeftOperand() {
        var values: [Float] = [1, -2, 3]
        values.withUnsafeMutableBufferPointer { buffer in
            addForward(output: buffer.baseAddress!, lhs: buffer.baseAddress!, rhs: [1, 1, -4], count: 3, applyReLU: true)
        }
        XCTAssertEqual(values, [2, 0, 0])
    }

    static let batch = 2, channels = 3, spatial = 5

    static func affine(_ input: [Float], scale: [Float], shift: [Float], applyReLU: Bool) -> [Float] {
        var output = [Float](repeating: .nan, count: input.count)
        channelAffineForward(
            output: &output, input: input, scale: scale, shift: shift,
            batch: batch, channels: channels, spatial: spatial, applyReLU: applyReLU)
        return output
    }

    static func affineBackward(_ g: [Float], scale: [Float]) -> [Float] {
        var gradient = [Float](repeating: .nan, count: g.count)
        channelAffineBackward(
            inputGradient: &gradient, outputGradient: g, scale: scale,
            batch: batch, channels: channels, spatial: spatial)
        return gradient
    }

    func testChannelAffineForward() {
        var random = KernelTestRandom(seed: 40)
        let count = Self.batch * Self.channels * Self.spatial
        let input = random.floats(count), scale = random.floats(Self.channels), shift = random.floats(Self.channels)
        for applyReLU in [false, true] {
            let expected = input.indices.map { i -> Double in
                let c = (i / Self.spatial) % Self.channels
                let y = Double(input[i]) * Double(scale[c]) + Double(shift[c])
                return applyReLU ? max(y, 0) : y
            }
            KernelTestSupport.assertClose(
                Self.affine(input, scale: scale, shift: shift, applyReLU: applyReLU), expected,
                relativeTo: 1e-6, "relu \(applyReLU)")
        }
        var inPlace = input
        inPlace.withUnsafeMutableBufferPointer { buffer in
            channelAffineForward(
                output: buffer.baseAddress!, input: buffer.baseAddress!, scale: scale, shift: shift,
                batch: Self.batch, channels: Self.channels, spatial: Self.spatial, applyReLU: true)
        }
        XCTAssertEqual(inPlace, Self.affine(input, scale: scale, shift: shift, applyReLU: true))
    }

    func testChannelAffineBackward() {
        var random = KernelTestRandom(seed: 41)
        let count = Self.batch * Self.channels * Self.spatial
        let scale = random.floats(Self.channels), shift = random.floats(Self.channels)
        let g = random.floats(count)
        let gradient = Self.affineBackward(g, scale: scale)
        let expected = g.indices.map { Double(g[$0]) * Double(scale[($0 / Self.spatial) % Self.channels]) }
        KernelTestSupport.assertClose(gradient, expected, relativeTo: 1e-6)
        KernelTestSupport.assertAdjoint(
            inputCount: count, outputCount: count, seed: 42,
            forward: { Self.affine($0, scale: scale, shift: [0, 0, 0], applyReLU: false) },
            backward: { Self.affineBackward($0, scale: scale) })
        KernelTestSupport.assertFiniteDifferences(
            input: random.floats(count), outputGradient: g, gradient: gradient, probes: Array(0..<count),
            forward: { Self.affine($0, scale: scale, shift: shift, applyReLU: false) })
        var inPlace = g
        inPlace.withUnsafeMutableBufferPointer { buffer in
            channelAffineBackward(
                inputGradient: buffer.baseAddress!, outputGradient: buffer.baseAddress!, scale: scale,
                batch: Self.batch, channels: Self.channels, spatial: Self.spatial)
        }
        XCTAssertEqual(inPlace, gradient)
    }
}
