// FullGradFixtureTests: pytorch-grad-cam 1.5.7's FullGrad heatmaps (meta.json `fullgrad_cams`,
// keys `fullgrad/<id>`), recomputed by the engine: the sum of its terms, min-max normalised.
// Tolerance 1e-5 absolute, as the other CAMs (the generator records the reference's own
// float32-vs-float64 difference per map, `float64_vs_float32`). The eigen_smooth and aug_smooth
// entries are computed in Python from the engine's per-term maps; pytest checks them.
// Also: per-term maps sum to the summed output, K seeds per image equal K single-seed calls,
// and bias layers are every batch norm in module order.

import XCTest
@testable import SwiftCAM

final class FullGradFixtureTests: XCTestCase {
    static let tolerance: Float = 1e-5

    private func trace(_ fixture: Fixture, _ network: Network) throws -> Trace {
        let input = try fixture.tensor("input")
        return try input.values.withUnsafeBufferPointer {
            try Trace(network: network, input: $0.baseAddress!, shape: fixture.inputShape, layers: [Trace.inputLayer])
        }
    }

    /// min-max normalised rows of a (rows, plane) buffer, as the reference's final scale_cam_image.
    private func heatmaps(_ sums: FloatBuffer, plane: Int) -> [Float] {
        for row in 0..<(sums.count / plane) { CAMPostProcessing.minMaxNormalize(sums.pointer + row * plane, count: plane) }
        return sums.toArray()
    }

    func testEveryRecordedFullGradMatchesPytorchGradCAM() throws {
        var checked = 0
        for name in Fixture.cases {
            let fixture = try Fixture(name)
            let network = try fixture.network()
            let shape = fixture.inputShape
            guard case .array(let entries)? = fixture.meta["fullgrad_cams"] else { XCTFail("\(name): no fullgrad_cams in meta.json (re-run `make fixtures`)"); continue }
            for entry in entries where entry["eigen_smooth"] == .bool(false) && entry["aug_smooth"] == .bool(false) {
                guard case .string(let key)? = entry["key"] else { XCTFail("\(name): malformed entry"); continue }
                let trace = try trace(fixture, network)
                let seeds = Seeds.forTargets(entry["targets"], logits: trace.logits.toArray(), numClasses: network.numClasses)
                let sums = try seeds.withUnsafeBufferPointer {
                    try trace.fullGradient(seeds: $0.baseAddress!, seedsPerImage: 1, outputHeight: shape.height,
                                           outputWidth: shape.width, sumTerms: true)
                }
                let result = heatmaps(sums, plane: shape.planeCount)
                let error = maxAbsDifference(try fixture.tensor(key).values, result.withUnsafeBufferPointer { $0 })
                XCTAssertLessThanOrEqual(error, Self.tolerance, "\(name) \(key): max |difference| \(error)")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 8, "too few FullGrad fixtures checked")
    }

    func testBiasLayersAreEveryBatchNormInModuleOrder() throws {
        let fixture = try Fixture("bottleneck")
        let network = try fixture.network()
        // Every batch norm ("<module>.running_mean"), sorted into torchvision's module order:
        // bn1, then per block bn1, bn2, bn3, downsample.1.
        func order(_ name: String) -> [Int] {
            let parts = name.split(separator: ".").map(String.init)
            guard parts.count > 2, let stage = Int(parts[0].dropFirst(5)), let block = Int(parts[1]) else { return [0, 0, 0] }
            return [stage, block, parts[2] == "downsample" ? 9 : Int(parts[2].dropFirst(2)) ?? 0]
        }
        let norms = fixture.weights.entries.filter { $0.name.hasSuffix(".running_mean") }
            .sorted { order($0.name).lexicographicallyPrecedes(order($1.name)) }
        XCTAssertEqual(norms.count, 20)  // stem, 5 blocks x 3, 4 downsamples
        XCTAssertEqual(network.biasLayers.map(\.count), norms.map { $0.shape[0] })
        // The values: beta - mean * gamma / sqrt(var + eps) of the last one (layer4's downsample).
        let prefix = String(try XCTUnwrap(norms.last).name.dropLast(".running_mean".count))
        let read = { (suffix: String) throws -> [Float] in
            try fixture.weights.floats(of: try XCTUnwrap(fixture.weights.entry(named: prefix + suffix)))
        }
        let (gamma, beta, mean, variance) = (try read(".weight"), try read(".bias"), try read(".running_mean"), try read(".running_var"))
        let bias = try XCTUnwrap(network.biasLayers.last).toArray()
        for c in bias.indices {
            let expected = Double(beta[c]) - Double(mean[c]) * Double(gamma[c]) / (Double(variance[c]) + 1e-5).squareRoot()
            XCTAssertEqual(Double(bias[c]), expected, accuracy: 1e-6)
        }
    }

    func testTermsSumToTheSummedOutputAndSeedsAreIndependent() throws {
        let fixture = try Fixture("basic")
        let network = try fixture.network()
        let trace = try trace(fixture, network)
        let classes = network.numClasses
        let images = fixture.inputShape.batch
        let (height, width) = (20, 31)  // not the input size: every term is resized
        let plane = height * width
        let terms = fixture.inputShape.channels + network.biasLayers.count
        // K = 2 seeds per image: classes (1, 2) for every image.
        var seeds = [Float](repeating: 0, count: images * 2 * classes)
        for image in 0..<images { seeds[(image * 2) * classes + 1] = 1; seeds[(image * 2 + 1) * classes + 2] = 1 }
        let perTerm = try seeds.withUnsafeBufferPointer {
            try trace.fullGradient(seeds: $0.baseAddress!, seedsPerImage: 2, outputHeight: height, outputWidth: width, sumTerms: false)
        }
        let summed = try seeds.withUnsafeBufferPointer {
            try trace.fullGradient(seeds: $0.baseAddress!, seedsPerImage: 2, outputHeight: height, outputWidth: width, sumTerms: true)
        }
        XCTAssertEqual(perTerm.count, images * 2 * terms * plane)
        // Equal up to the order of the float32 additions (relative to the largest sum).
        var worst: Float = 0
        let largest = maxAbs(summed.toArray())
        for row in 0..<(images * 2) {
            for p in 0..<plane {
                var total: Float = 0
                for term in 0..<terms { total += perTerm.pointer[(row * terms + term) * plane + p] }
                worst = max(worst, abs(total - summed.pointer[row * plane + p]))
            }
        }
        XCTAssertLessThanOrEqual(worst, 1e-6 * largest)
        // Each of the K rows equals a single-seed call for that class, up to float rounding: N*K
        // gradient rows run through other product shapes than N (small feature maps of several
        // rows share one GEMM), which moves sums by an ulp (measured 3e-5 absolute).
        for k in 0..<2 {
            let single = Seeds.oneHot(classes: [Int](repeating: k + 1, count: images), numClasses: classes)
            let alone = try single.withUnsafeBufferPointer {
                try trace.fullGradient(seeds: $0.baseAddress!, seedsPerImage: 1, outputHeight: height, outputWidth: width, sumTerms: true)
            }
            for image in 0..<images {
                let expected = Array(UnsafeBufferPointer(start: alone.pointer + image * plane, count: plane))
                let actual = UnsafeBufferPointer(start: UnsafePointer(summed.pointer + (image * 2 + k) * plane), count: plane)
                XCTAssertLessThanOrEqual(maxAbsDifference(expected, actual), 1e-6 * largest, "image \(image), seed \(k)")
            }
        }
    }

    func testRequiresTheInputLayerAndValidSizes() throws {
        let fixture = try Fixture("basic")
        let network = try fixture.network()
        let input = try fixture.tensor("input")
        let layer4 = try XCTUnwrap(network.layers.firstIndex { $0.name == "layer4" })
        let trace = try input.values.withUnsafeBufferPointer {
            try Trace(network: network, input: $0.baseAddress!, shape: fixture.inputShape, layers: [layer4])
        }
        let seeds = Seeds.oneHot(classes: [1, 2], numClasses: network.numClasses)
        try seeds.withUnsafeBufferPointer { pointer in
            XCTAssertThrowsError(try trace.fullGradient(seeds: pointer.baseAddress!, seedsPerImage: 1, outputHeight: 8, outputWidth: 8, sumTerms: true)) {
                XCTAssertTrue(($0 as? SwiftCAMError)?.message.contains("input layer") == true, "\($0)")
            }
        }
        let good = try self.trace(fixture, network)
        try seeds.withUnsafeBufferPointer { pointer in
            XCTAssertThrowsError(try good.fullGradient(seeds: pointer.baseAddress!, seedsPerImage: 1, outputHeight: 0, outputWidth: 8, sumTerms: true))
            XCTAssertThrowsError(try good.fullGradient(seeds: pointer.baseAddress!, seedsPerImage: 0, outputHeight: 8, outputWidth: 8, sumTerms: true))
        }
    }
}
