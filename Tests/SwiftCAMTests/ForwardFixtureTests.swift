// ForwardFixtureTests: the forward pass against PyTorch on every fixture case: inferred
// architecture and layer names, logits, and the activation of every named layer.
// Tolerance: max |difference| <= 1e-5 x max |reference|. Two float32 CPU backends differ by about
// 1e-6 of the largest value (the generator measures float32 vs float64 PyTorch at ~6e-7), and
// swiftcam folds batch norm into the weights, which rounds differently again.

import XCTest
@testable import SwiftCAM

final class ForwardFixtureTests: XCTestCase {
    static let relativeTolerance: Float = 1e-5

    func testLayerNamesMatchTorchvisionModules() throws {
        for name in Fixture.cases {
            let fixture = try Fixture(name)
            let network = try fixture.network()
            XCTAssertEqual(network.layers.map(\.name), strings(fixture.meta["layer_names"]), name)
            XCTAssertEqual(network.numClasses, fixtureClasses(fixture), name)
        }
    }

    func testLogitsMatchPyTorch() throws {
        for name in Fixture.cases {
            let fixture = try Fixture(name)
            let network = try fixture.network()
            let input = try fixture.tensor("input")
            let expected = try fixture.tensor("logits")
            let logits = try input.values.withUnsafeBufferPointer { try network.forward($0.baseAddress!, shape: fixture.inputShape) }
            let error = maxAbsDifference(expected.values, UnsafeBufferPointer(logits.buffer))
            let scale = maxAbs(expected.values)
            XCTAssertGreaterThan(scale, 0, "\(name): degenerate fixture")
            XCTAssertLessThanOrEqual(error, Self.relativeTolerance * scale, "\(name): logits differ by \(error) (max |logit| \(scale))")
        }
    }

    func testEveryLayerActivationMatchesPyTorch() throws {
        for name in Fixture.cases {
            let fixture = try Fixture(name)
            let network = try fixture.network()
            let input = try fixture.tensor("input")
            let trace = try input.values.withUnsafeBufferPointer {
                try Trace(network: network, input: $0.baseAddress!, shape: fixture.inputShape, layers: Array(network.layers.indices))
            }
            for (position, layer) in network.layers.enumerated() {
                let expected = try fixture.tensor("activation/\(layer.name)")
                XCTAssertEqual(try trace.activationShape(at: position).dimensions, expected.shape, "\(name) \(layer.name)")
                let actual = try trace.activation(at: position)
                let error = maxAbsDifference(expected.values, UnsafeBufferPointer(actual.buffer))
                let scale = maxAbs(expected.values)
                XCTAssertLessThanOrEqual(error, Self.relativeTolerance * scale, "\(name) \(layer.name): differs by \(error) (max \(scale))")
            }
        }
    }

    private func fixtureClasses(_ fixture: Fixture) -> Int {
        if case .number(let n)? = fixture.meta["num_classes"] { return Int(n) }
        return -1
    }
}
