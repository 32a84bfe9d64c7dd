// BackwardFixtureTests: the partial backward pass against PyTorch autograd: d(sum of each image's
// target logit)/d(activation) at every named layer, from one trace, for every fixture case.
// Tolerance: 1e-5 x max |reference gradient| (same reasoning as the forward pass; the generator
// measured float32 vs float64 PyTorch gradients at ~6e-7 relative).

import XCTest
@testable import SwiftCAM

final class BackwardFixtureTests: XCTestCase {
    func testGradientsAtEveryLayerMatchAutograd() throws {
        for name in Fixture.cases {
            let fixture = try Fixture(name)
            let network = try fixture.network()
            let input = try fixture.tensor("input")
            let layers = Array(network.layers.indices)
            let trace = try input.values.withUnsafeBufferPointer {
                try Trace(network: network, input: $0.baseAddress!, shape: fixture.inputShape, layers: layers)
            }
            let seeds = Seeds.oneHot(classes: ints(fixture.meta["gradient_targets"]), numClasses: network.numClasses)
            let gradients = try seeds.withUnsafeBufferPointer { try trace.backward(seeds: $0.baseAddress!, seedsPerImage: 1) }
            XCTAssertEqual(gradients.count, layers.count)
            for (layer, gradient) in zip(network.layers, gradients) {
                let expected = try fixture.tensor("gradient/\(layer.name)")
                let scale = maxAbs(expected.values)
                XCTAssertGreaterThan(scale, 0, "\(name) \(layer.name): zero reference gradient")
                let error = maxAbsDifference(expected.values, UnsafeBufferPointer(gradient.buffer))
                XCTAssertLessThanOrEqual(error, 1e-5 * scale, "\(name) \(layer.name): gradient differs by \(error) (max \(scale))")
            }
        }
    }

    func testInputGradientsMatchAutogradAndGuidedBackprop() throws {
        for name in Fixture.cases {
            let fixture = try Fixture(name)
            let network = try fixture.network()
            let input = try fixture.tensor("input")
            let trace = try input.values.withUnsafeBufferPointer {
                try Trace(network: network, input: $0.baseAddress!, shape: fixture.inputShape, layers: [Trace.inputLayer])
            }
            XCTAssertEqual(try trace.activation(at: 0).toArray(), input.values, "\(name): the input layer is a copy of the input")
            let seeds = Seeds.oneHot(classes: ints(fixture.meta["gradient_targets"]), numClasses: network.numClasses)
            for (key, rule) in [("gradient/input", ReLUBackwardRule.standard), ("guided/input", .guided)] {
                let gradient = try seeds.withUnsafeBufferPointer { try trace.backward(seeds: $0.baseAddress!, seedsPerImage: 1, reluRule: rule) }[0]
                let expected = try fixture.tensor(key)
                let scale = maxAbs(expected.values)
                let error = maxAbsDifference(expected.values, UnsafeBufferPointer(gradient.buffer))
                XCTAssertLessThanOrEqual(error, 1e-5 * scale, "\(name) \(key): differs by \(error) (max \(scale))")
            }
        }
    }

    func testForwardFromALayerEqualsTheFullForwardPass() throws {
        for name in Fixture.cases {
            let fixture = try Fixture(name)
            let network = try fixture.network()
            let expected = try fixture.tensor("logits").values
            for layerName in ["maxpool", "layer2", "layer3.0", "layer4", "avgpool"] {
                let layer = try XCTUnwrap(network.layers.firstIndex { $0.name == layerName })
                let activation = try fixture.tensor("activation/\(layerName)")
                let shape = ActivationShape(batch: activation.shape[0], channels: activation.shape[1],
                                            height: activation.shape[2], width: activation.shape[3])
                let logits = try activation.values.withUnsafeBufferPointer {
                    try network.forward(fromLayer: layer, activation: $0.baseAddress!, shape: shape)
                }
                let error = maxAbsDifference(expected, UnsafeBufferPointer(logits.buffer))
                XCTAssertLessThanOrEqual(error, 1e-5 * maxAbs(expected), "\(name) from \(layerName): \(error)")
            }
        }
    }

    func testSeveralSeedsEqualSeparateBackwardPasses() throws {
        let fixture = try Fixture("bottleneck")
        let network = try fixture.network()
        let input = try fixture.tensor("input")
        let layer = network.layers.firstIndex { $0.name == "layer2" }!
        let trace = try input.values.withUnsafeBufferPointer {
            try Trace(network: network, input: $0.baseAddress!, shape: fixture.inputShape, layers: [layer])
        }
        let images = fixture.inputShape.batch
        let k = 3
        let classes = network.numClasses
        // (N, K, classes) seeds: classes 0, 1, 2 for every image.
        var seeds = [Float](repeating: 0, count: images * k * classes)
        for image in 0..<images { for seed in 0..<k { seeds[(image * k + seed) * classes + seed] = 1 } }
        let joint = try seeds.withUnsafeBufferPointer { try trace.backward(seeds: $0.baseAddress!, seedsPerImage: k) }[0]
        let plane = try trace.activationShape(at: 0).imageCount
        for seed in 0..<k {
            let single = Seeds.oneHot(classes: Array(repeating: seed, count: images), numClasses: classes)
            let separate = try single.withUnsafeBufferPointer { try trace.backward(seeds: $0.baseAddress!, seedsPerImage: 1) }[0]
            for image in 0..<images {
                let a = Array(UnsafeBufferPointer(start: joint.pointer + (image * k + seed) * plane, count: plane))
                let b = UnsafeBufferPointer(start: separate.pointer + image * plane, count: plane)
                XCTAssertEqual(maxAbsDifference(a, b), 0, "seed \(seed) image \(image): batched seeds must equal a separate pass exactly")
            }
        }
    }
}
