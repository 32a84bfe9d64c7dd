// WeightValidationTests: the ResNet builder's checks on a fixture's state dict with one tensor
// removed, added or reshaped, and architecture inference (names, configuration) on the fixtures.

import XCTest
@testable import SwiftCAM

final class WeightValidationTests: XCTestCase {
    /// The fixture's tensors as caller-owned arrays, editable by the test.
    private func tensors(_ fixture: Fixture) throws -> [(name: String, shape: [Int], values: [Float])] {
        try fixture.weights.entries.filter { $0.dtype.isFloatingPoint }.map { ($0.name, $0.shape, try fixture.weights.floats(of: $0)) }
    }

    private func build(_ list: [(name: String, shape: [Int], values: [Float])]) throws -> Network {
        var storage = list.map(\.values)
        return try storage.withUnsafeMutableBufferPointer { arrays in
            let borrowed = list.indices.map { index in
                BorrowedWeights.Tensor(name: list[index].name, shape: list[index].shape,
                                       values: UnsafeBufferPointer(arrays[index].withUnsafeMutableBufferPointer { $0 }))
            }
            return try ResNetBuilder.build(from: try BorrowedWeights(borrowed))
        }
    }

    private func assertWeightError(_ list: [(name: String, shape: [Int], values: [Float])], contains fragment: String,
                                   file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try build(list), file: file, line: line) { error in
            guard let error = error as? SwiftCAMError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue(error.message.contains(fragment), "'\(error.message)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    func testBorrowedWeightsBuildTheSameNetworkAsTheFile() throws {
        let fixture = try Fixture("grouped")
        let fromFile = try fixture.network()
        let fromArrays = try build(try tensors(fixture))
        let input = try fixture.tensor("input")
        let a = try input.values.withUnsafeBufferPointer { try fromFile.forward($0.baseAddress!, shape: fixture.inputShape) }
        let b = try input.values.withUnsafeBufferPointer { try fromArrays.forward($0.baseAddress!, shape: fixture.inputShape) }
        XCTAssertEqual(a.toArray(), b.toArray())
        XCTAssertEqual(fromFile.configurationJSON, fromArrays.configurationJSON)
    }

    func testMissingTensorIsNamed() throws {
        let list = try tensors(try Fixture("basic")).filter { $0.name != "layer2.1.bn2.running_var" }
        assertWeightError(list, contains: "missing tensor 'layer2.1.bn2.running_var'")
    }

    func testUnexpectedTensorIsNamed() throws {
        var list = try tensors(try Fixture("basic"))
        list.append(("layer3.0.extra.weight", [2], [1, 2]))
        assertWeightError(list, contains: "unexpected tensor 'layer3.0.extra.weight'")
    }

    func testMisShapedTensorIsNamedWithBothShapes() throws {
        var list = try tensors(try Fixture("bottleneck"))
        let index = list.firstIndex { $0.name == "layer2.0.conv2.weight" }!
        let shape = list[index].shape
        list[index].shape = [shape[0], shape[1], 1, shape[2] * shape[3]]
        assertWeightError(list, contains: "tensor 'layer2.0.conv2.weight' has shape [\(shape[0]), \(shape[1]), 1, 9], expected \(shape)")
    }

    func testNonResNetIsUnsupported() throws {
        XCTAssertThrowsError(try build([("features.0.weight", [4], [1, 2, 3, 4])])) { error in
            XCTAssertEqual((error as? SwiftCAMError)?.statusCode, 5)
        }
    }

    func testConfigurationIsInferred() throws {
        let network = try Fixture("grouped").network()
        let config = try JSONValue.parse(network.configurationJSON)
        XCTAssertEqual(config["block"], .string("bottleneck"))
        XCTAssertEqual(config["groups"], .number(4))
        XCTAssertEqual(network.architecture, "resnet")  // reduced widths have no torchvision name
    }

    func testTorchvisionNamesAreRecognised() {
        let resnet50 = ResNetConfiguration(block: .bottleneck, layers: [3, 4, 6, 3], inputChannels: 3, stemWidth: 64,
                                           planes: [64, 128, 256, 512], innerWidths: [64, 128, 256, 512], groups: 1, numClasses: 10)
        XCTAssertEqual(resnet50.torchvisionName, "resnet50")
        var resnext = resnet50
        resnext.groups = 32
        resnext.innerWidths = [128, 256, 512, 1024]
        XCTAssertEqual(resnext.torchvisionName, "resnext50_32x4d")
        var wide = resnet50
        wide.innerWidths = [128, 256, 512, 1024]
        XCTAssertEqual(wide.torchvisionName, "wide_resnet50_2")
        let resnet18 = ResNetConfiguration(block: .basic, layers: [2, 2, 2, 2], inputChannels: 3, stemWidth: 64,
                                           planes: [64, 128, 256, 512], innerWidths: [64, 128, 256, 512], groups: 1, numClasses: 1000)
        XCTAssertEqual(resnet18.torchvisionName, "resnet18")
    }
}
