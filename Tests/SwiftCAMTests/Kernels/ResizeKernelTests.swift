// ResizeKernelTests: the two bilinear resizes on small cases worked out by hand from their
// coordinate formulas, plus properties (constants stay constant, same size is the identity,
// planes are independent, height and width are not swapped).

import SwiftCAM
import XCTest

final class ResizeKernelTests: XCTestCase {
    typealias Resize = @Sendable (
        UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int, Int, Int, Int, Int
    ) -> Void

    static let halfPixel: Resize = {
        bilinearResizeHalfPixel(
            output: $0, input: $1, planes: $2, inputHeight: $3, inputWidth: $4, outputHeight: $5, outputWidth: $6)
    }
    static let alignCorners: Resize = {
        bilinearResizeAlignCorners(
            output: $0, input: $1, planes: $2, inputHeight: $3, inputWidth: $4, outputHeight: $5, outputWidth: $6)
    }

    static func resize(
        _ resize: Resize, _ input: [Float], planes: Int = 1, from size: (Int, Int), to outputSize: (Int, Int)
    ) -> [Float] {
        var output = [Float](repeating: .nan, count: planes * outputSize.0 * outputSize.1)
        output.withUnsafeMutableBufferPointer { output in
            resize(output.baseAddress!, input, planes, size.0, size.1, outputSize.0, outputSize.1)
        }
        return output
    }

    /// Hand values are exact to a few float ulps; 1e-6 of the largest value allows only rounding.
    func check(_ actual: [Float], _ expected: [Double], _ message: String, line: UInt = #line) {
        KernelTestSupport.assertClose(actual, expected, relativeTo: 1e-6, message, line: line)
    }

    func testHalfPixelUpscaleTwoByTwoToFourByFour() {
        // scale = 2/4 = 0.5; source = (d + 0.5) * 0.5 - 0.5 = -0.25, 0.25, 0.75, 1.25 for d = 0...3.
        // -0.25 clamps to 0 (weight 1 on sample 0); 0.25 and 0.75 mix samples 0 and 1 with weights
        // (0.75, 0.25) and (0.25, 0.75); 1.25 is past the last sample, which takes all the weight.
        // Rows of [[1, 2], [3, 4]] become [1, 1.25, 1.75, 2] and [3, 3.25, 3.75, 4]; the same
        // weights between them give the middle rows (this is torch's well-known result).
        check(
            Self.resize(Self.halfPixel, [1, 2, 3, 4], from: (2, 2), to: (4, 4)),
            [1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4], "2x2 -> 4x4")
    }

    func testHalfPixelDownscale() {
        // 4 -> 2: scale 2, sources 0.5 and 2.5: means of samples (0, 1) and (2, 3). The single row
        // maps to source (0 + 0.5) * 1 - 0.5 = 0.
        check(Self.resize(Self.halfPixel, [0, 2, 4, 8], from: (1, 4), to: (1, 2)), [1, 6], "4 -> 2")
        // 3 -> 2: scale 1.5, sources 0.25 and 1.75: 0.75*0 + 0.25*4 = 1 and 0.25*4 + 0.75*8 = 7.
        check(Self.resize(Self.halfPixel, [0, 4, 8], from: (1, 3), to: (1, 2)), [1, 7], "3 -> 2")
    }

    func testHalfPixelNonSquare() {
        // Columns 3 -> 5: scale 0.6, sources -0.2 (-> 0), 0.4, 1.0, 1.6, 2.2 (past the end -> 2):
        // c0, 0.6 c0 + 0.4 c1, c1, 0.4 c1 + 0.6 c2, c2.
        // Rows 2 -> 3: scale 2/3, sources -1/6 (-> 0), 0.5, 7/6 (past the end -> 1): r0, mean, r1.
        let expectedRow0: [Double] = [0, 4, 10, 16, 20], expectedRow2: [Double] = [100, 104, 110, 116, 120]
        let expected = expectedRow0 + zip(expectedRow0, expectedRow2).map { ($0 + $1) / 2 } + expectedRow2
        check(
            Self.resize(Self.halfPixel, [0, 10, 20, 100, 110, 120], from: (2, 3), to: (3, 5)),
            expected, "2x3 -> 3x5")
        // 2x1 -> 4x3: each output row is constant across its three columns.
        check(
            Self.resize(Self.halfPixel, [1, 3], from: (2, 1), to: (4, 3)),
            [1, 1, 1, 1.5, 1.5, 1.5, 2.5, 2.5, 2.5, 3, 3, 3], "2x1 -> 4x3")
    }

    func testAlignCornersByHand() {
        // 2 -> 3: scale (2-1)/(3-1) = 0.5, sources 0, 0.5, 1.
        check(
            Self.resize(Self.alignCorners, [1, 2, 3, 4], from: (2, 2), to: (3, 3)),
            [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4], "2x2 -> 3x3")
        // 2 -> 4: scale 1/3, sources 0, 1/3, 2/3, 1. One row: scale 0, source 0.
        check(Self.resize(Self.alignCorners, [0, 3], from: (1, 2), to: (1, 4)), [0, 1, 2, 3], "2 -> 4")
        // 5 -> 3: scale 4/2 = 2, sources 0, 2, 4 hit samples exactly.
        check(Self.resize(Self.alignCorners, [0, 1, 2, 3, 4], from: (1, 5), to: (1, 3)), [0, 2, 4], "5 -> 3")
        // Output size 1: source 0, the top-left sample.
        check(Self.resize(Self.alignCorners, [7, 8, 9, 10], from: (2, 2), to: (1, 1)), [7], "2x2 -> 1x1")
    }

    func testConstantStaysConstantAndSameSizeIsIdentity() {
        var random = KernelTestRandom(seed: 50)
        let image = random.floats(2 * 6 * 9)
        for resize in [Self.halfPixel, Self.alignCorners] {
            let constant = Self.resize(resize, [Float](repeating: 0.7, count: 35), from: (5, 7), to: (224, 173))
            check(constant, [Double](repeating: Double(Float(0.7)), count: 224 * 173), "constant")
            XCTAssertEqual(Self.resize(resize, image, planes: 2, from: (6, 9), to: (6, 9)), image)
        }
    }

    func testPlanesAreIndependent() {
        let first: [Float] = [1, 2, 3, 4], second: [Float] = [-8, 0, 5, 1]
        for resize in [Self.halfPixel, Self.alignCorners] {
            let both = Self.resize(resize, first + second, planes: 2, from: (2, 2), to: (5, 3))
            let separate = Self.resize(resize, first, from: (2, 2), to: (5, 3))
                + Self.resize(resize, second, from: (2, 2), to: (5, 3))
            XCTAssertEqual(both, separate)
        }
    }
}
