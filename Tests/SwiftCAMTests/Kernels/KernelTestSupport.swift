// KernelTestSupport: seeded random data, tolerant comparisons, and the two gradient checks
// (dot-product adjoint and central finite differences) shared by the kernel tests.

import XCTest

/// SplitMix64: a small, seeded generator so that every kernel test sees the same data on every run.
struct KernelTestRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// `count` floats uniform in `range`.
    mutating func floats(_ count: Int, in range: ClosedRange<Float> = -1...1) -> [Float] {
        (0..<count).map { _ in Float.random(in: range, using: &self) }
    }
}

enum KernelTestSupport {
    /// Σ a[i] * b[i] accumulated in Double.
    static func dot(_ a: [Float], _ b: [Float]) -> Double {
        zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }

    /// Σ |a[i] * b[i]| in Double: the scale against which rounding in `dot` is judged.
    static func absoluteDot(_ a: [Float], _ b: [Float]) -> Double {
        zip(a, b).reduce(0) { $0 + abs(Double($1.0) * Double($1.1)) }
    }

    /// Asserts |actual - expected| <= tolerance * max(max |expected|, 1e-3) elementwise.
    static func assertClose(
        _ actual: [Float], _ expected: [Double], relativeTo tolerance: Double, _ message: String = "",
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(actual.count, expected.count, "count " + message, file: file, line: line)
        let scale = max(expected.map(abs).max() ?? 0, 1e-3)
        var worst = 0.0, worstIndex = 0
        for (i, (a, e)) in zip(actual, expected).enumerated() {
            let error = abs(Double(a) - e)
            if !(error <= worst) { worst = error; worstIndex = i }  // catches NaN too
        }
        XCTAssert(
            worst <= tolerance * scale,
            "\(message): max error \(worst) at \(worstIndex) (got \(actual[worstIndex]), "
                + "expected \(expected[worstIndex])), allowed \(tolerance * scale)",
            file: file, line: line)
    }

    /// Checks that `backward` is the adjoint of the linear map `forward`: <F x, g> == <x, B g>.
    /// Both sides are float32 results summed in Double, each off by about sqrt(K) float ulps per
    /// term (K = terms per dot product), so 1e-5 of Σ|terms| is ample while an indexing mistake
    /// changes the sides by O(1) of it.
    static func assertAdjoint(
        inputCount: Int, outputCount: Int, seed: UInt64,
        forward: ([Float]) -> [Float], backward: ([Float]) -> [Float],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        var random = KernelTestRandom(seed: seed)
        let x = random.floats(inputCount), g = random.floats(outputCount)
        let y = forward(x), gx = backward(g)
        XCTAssertEqual(y.count, outputCount, file: file, line: line)
        XCTAssertEqual(gx.count, inputCount, file: file, line: line)
        let lhs = dot(y, g), rhs = dot(x, gx)
        let scale = max(absoluteDot(y, g), absoluteDot(x, gx))
        XCTAssert(scale > 0, "degenerate adjoint test", file: file, line: line)
        XCTAssertEqual(lhs, rhs, accuracy: 1e-5 * scale, "<Fx,g> vs <x,Bg>", file: file, line: line)
    }

    /// Checks `gradient` (= backward(g)) against central differences of L(x) = <forward(x), g> at
    /// `probes` input indices.
    ///
    /// The step is 2^-7 and the actual float step (x+h) - (x-h) is used as the divisor. L is summed
    /// in Double from float32 outputs; outputs that do not depend on x[i] round identically on both
    /// sides and cancel, the few that do carry ~1e-7 relative error each, which divided by the step
    /// gives errors ~1e-5 of the gradient's scale. Non-linear kernels must be probed away from kinks.
    /// Tolerance: 1e-3 of the largest gradient magnitude.
    static func assertFiniteDifferences(
        input x: [Float], outputGradient g: [Float], gradient: [Float], probes: [Int],
        forward: ([Float]) -> [Float],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        let step: Float = 1.0 / 128
        let scale = max(gradient.map { abs(Double($0)) }.max() ?? 0, 1e-3)
        for i in probes {
            var plus = x, minus = x
            plus[i] += step
            minus[i] -= step
            let numeric = (dot(forward(plus), g) - dot(forward(minus), g)) / Double(plus[i] - minus[i])
            XCTAssertEqual(
                Double(gradient[i]), numeric, accuracy: 1e-3 * scale,
                "d/dx[\(i)]", file: file, line: line)
        }
    }

    /// `count` distinct indices in 0..<range, always including the first and last.
    static func probes(_ count: Int, in range: Int, random: inout KernelTestRandom) -> [Int] {
        var chosen: Set<Int> = [0, range - 1]
        while chosen.count < min(count, range) { chosen.insert(Int.random(in: 0..<range, using: &random)) }
        return chosen.sorted()
    }
}
