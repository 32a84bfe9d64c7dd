// CAMFixtureTests: every CAM recorded from pytorch-grad-cam 1.5.7 by the fixture generator,
// recomputed by the Swift engine. Tolerance 1e-5 absolute on the normalized maps (values in
// [0, 1]), or twice the reference's own float32 error where that is larger (see `tolerance`).
// EigenCAM and EigenGradCAM are compared up to the sign of each layer's principal component
// (arbitrary in the SVD; swiftcam's own sign rule is documented in PrincipalProjection.swift).

import XCTest
@testable import SwiftCAM

final class CAMFixtureTests: XCTestCase {
    /// 1e-5, or twice the fixture's measured distance between the reference's float32 and float64
    /// CAMs (meta.json float64_vs_float32.cam_abs_max) when that is larger: the reference is only
    /// known to that distance from the exact map, and a float32 engine that sums in another order
    /// is as far from it on its own side. Seen: bottleneck's GradCAM++ eigen_smooth map differed
    /// from the reference by 1.0e-5 on a first blocking of swiftcam's GEMM kernel (6.4e-6 on the
    /// current one); that fixture's tolerance is 1.1e-5. tools/cam_against_float64.py prints
    /// both engines' distances from float64.
    static func tolerance(_ fixture: Fixture) -> Float {
        guard case .number(let noise)? = fixture.meta["float64_vs_float32"]?["cam_abs_max"] else { return 1e-5 }
        return max(1e-5, 2 * Float(noise))
    }

    static let methods: [String: CAMMethod] = [
        "GradCAM": .gradCAM, "HiResCAM": .hiResCAM, "GradCAMElementWise": .gradCAMElementWise,
        "GradCAMPlusPlus": .gradCAMPlusPlus, "XGradCAM": .xGradCAM, "LayerCAM": .layerCAM,
        "EigenCAM": .eigenCAM, "EigenGradCAM": .eigenGradCAM,
    ]

    func testEveryRecordedCAMMatchesPytorchGradCAM() throws {
        var checked = 0
        for name in Fixture.cases {
            let fixture = try Fixture(name)
            let network = try fixture.network()
            let input = try fixture.tensor("input")
            let shape = fixture.inputShape
            guard case .array(let cams)? = fixture.meta["cams"] else { XCTFail("\(name): no cams in meta.json"); continue }
            for cam in cams {
                guard case .string(let key)? = cam["key"], case .string(let methodName)? = cam["method"],
                      let method = Self.methods[methodName] else { XCTFail("\(name): malformed cam entry"); continue }
                let layers = strings(cam["target_layers"]).compactMap { layer in network.layers.firstIndex { $0.name == layer } }
                let trace = try input.values.withUnsafeBufferPointer {
                    try Trace(network: network, input: $0.baseAddress!, shape: shape, layers: layers)
                }
                let seeds = Seeds.forTargets(cam["targets"], logits: trace.logits.toArray(), numClasses: network.numClasses)
                let options = CAMOptions(method: method, eigenSmooth: cam["eigen_smooth"] == .bool(true),
                                         outputHeight: shape.height, outputWidth: shape.width)
                let result = try seeds.withUnsafeBufferPointer {
                    try CAMComputer.compute(trace: trace, options: options, seeds: $0.baseAddress!, seedsPerImage: 1)
                }
                let expected = try fixture.tensor(key)
                let error = method.alwaysProjects || options.eigenSmooth
                    ? try errorUpToSign(expected.values, result: result, trace: trace, options: options)
                    : maxAbsDifference(expected.values, UnsafeBufferPointer(result.heatmaps.buffer))
                XCTAssertLessThanOrEqual(error, Self.tolerance(fixture), "\(name) \(key): max |difference| \(error)")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 60, "too few CAM fixtures checked")
    }

    /// The smallest error over the 2^L sign choices of each image's per-layer projections.
    private func errorUpToSign(_ expected: [Float], result: CAMResult, trace: Trace, options: CAMOptions) throws -> Float {
        let layerCount = result.rawMaps.count
        let plane = options.outputHeight * options.outputWidth
        var worst: Float = 0
        for image in 0..<trace.inputShape.batch {
            var best = Float.infinity
            for signs in 0..<(1 << layerCount) {
                let perLayer = try FloatBuffer(count: layerCount * plane)
                for layer in 0..<layerCount {
                    let shape = try trace.activationShape(at: layer)
                    let map = try FloatBuffer(count: shape.planeCount)
                    let sign: Float = signs & (1 << layer) == 0 ? 1 : -1
                    for p in 0..<shape.planeCount { map.pointer[p] = sign * result.rawMaps[layer].pointer[image * shape.planeCount + p] }
                    CAMPostProcessing.scaledLayerMap(map.pointer, height: shape.height, width: shape.width,
                                                     into: perLayer.pointer + layer * plane,
                                                     outputHeight: options.outputHeight, outputWidth: options.outputWidth)
                }
                let heatmap = try FloatBuffer(count: plane)
                CAMPostProcessing.aggregateLayers(perLayer, layerCount: layerCount, rows: 1, plane: plane, into: heatmap)
                let reference = Array(expected[image * plane..<(image + 1) * plane])
                best = min(best, maxAbsDifference(reference, UnsafeBufferPointer(heatmap.buffer)))
            }
            worst = max(worst, best)
        }
        return worst
    }
}
