// CABITests: the C ABI as a binding sees it: loading, forward into caller buffers, traces and
// CAMs, and that bad arguments (NULLs, wrong buffer sizes, bad layer indices, wrong shapes,
// corrupt files) come back as status codes with messages instead of traps.

import CSwiftCAM
import XCTest
@testable import SwiftCAM
@testable import SwiftCAMExports

final class CABITests: XCTestCase {
    private var message = [CChar](repeating: 0, count: 512)
    private var messageText: String { String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }

    private func loadFixtureModel(_ name: String = "basic") throws -> OpaquePointer {
        let path = Fixture.directory.appendingPathComponent("\(name)/weights.safetensors").path
        var model: OpaquePointer? = nil
        let status = swiftcam_model_load_file(path, &model, &message, Int64(message.count))
        XCTAssertEqual(status, SWIFTCAM_STATUS_OK, messageText)
        return try XCTUnwrap(model)
    }

    func testStatusStringsAreStableAndTotal() {
        XCTAssertEqual(String(cString: swiftcam_status_string(SWIFTCAM_STATUS_OK)), "ok")
        XCTAssertEqual(String(cString: swiftcam_status_string(SWIFTCAM_STATUS_WEIGHT_ERROR)), "weight error")
        XCTAssertEqual(String(cString: swiftcam_status_string(SWIFTCAM_STATUS_BUFFER_SIZE)), "buffer size mismatch")
        XCTAssertEqual(String(cString: swiftcam_status_string(-7)), "unknown status")
        XCTAssertEqual(String(cString: swiftcam_status_string(1000)), "unknown status")
        // Swift errors map to the header's codes.
        XCTAssertEqual(SwiftCAMError.unknownLayer("").statusCode, SWIFTCAM_STATUS_UNKNOWN_LAYER)
        XCTAssertEqual(SwiftCAMError.inputShape("").statusCode, SWIFTCAM_STATUS_INPUT_SHAPE)
    }

    func testForwardThroughTheABIMatchesTheFixtureAndReadsTheCallersMemory() throws {
        let fixture = try Fixture("basic")
        let model = try loadFixtureModel()
        defer { swiftcam_model_free(model) }
        XCTAssertEqual(String(cString: swiftcam_model_architecture(model)), "resnet")
        XCTAssertEqual(swiftcam_model_num_classes(model), 10)
        XCTAssertEqual(swiftcam_model_input_channels(model), 3)
        let names = (0..<swiftcam_model_layer_count(model)).map { String(cString: swiftcam_model_layer_name(model, $0)) }
        XCTAssertEqual(names, strings(fixture.meta["layer_names"]))
        XCTAssertNil(swiftcam_model_layer_name(model, -1))
        XCTAssertNil(swiftcam_model_layer_name(model, 999))

        let input = try fixture.tensor("input")
        let shape = fixture.inputShape.dimensions.map(Int64.init)
        var logits = [Float](repeating: 0, count: shape[0] == 2 ? 20 : 0)
        let status = input.values.withUnsafeBufferPointer { buffer in
            let status = swiftcam_model_forward(model, buffer.baseAddress, shape, &logits, Int64(logits.count), &message, Int64(message.count))
            XCTAssertEqual(swiftcam_model_last_input_address(model), Int64(Int(bitPattern: buffer.baseAddress)))
            return status
        }
        XCTAssertEqual(status, SWIFTCAM_STATUS_OK, messageText)
        let expected = try fixture.tensor("logits").values
        XCTAssertLessThanOrEqual(maxAbsDifference(expected, logits.withUnsafeBufferPointer { $0 }), 1e-5 * maxAbs(expected))
    }

    func testBadArgumentsReturnStatusesNotTraps() throws {
        let model = try loadFixtureModel()
        defer { swiftcam_model_free(model) }
        var logits = [Float](repeating: 0, count: 10)
        let input = [Float](repeating: 0.5, count: 3 * 64 * 64)
        func forward(_ shape: [Int64], count: Int64 = 10) -> Int32 {
            swiftcam_model_forward(model, input, shape, &logits, count, &message, Int64(message.count))
        }
        XCTAssertEqual(forward([1, 3, 64, 64]), SWIFTCAM_STATUS_OK, messageText)
        XCTAssertEqual(forward([1, 3, 64, 64], count: 9), SWIFTCAM_STATUS_BUFFER_SIZE)
        XCTAssertTrue(messageText.contains("expected 10"), messageText)
        XCTAssertEqual(forward([1, 4, 64, 32]), SWIFTCAM_STATUS_INPUT_SHAPE)
        XCTAssertTrue(messageText.contains("expected an input of shape (N, 3, H, W)"), messageText)
        // A ResNet runs on any size down to 1x1 (as in PyTorch); an empty image is an error.
        XCTAssertEqual(forward([1, 3, 1, 1]), SWIFTCAM_STATUS_OK, messageText)
        XCTAssertEqual(forward([1, 3, 0, 64]), SWIFTCAM_STATUS_INPUT_SHAPE)
        XCTAssertTrue(messageText.contains("empty spatial size"), messageText)
        XCTAssertEqual(forward([0, 3, 64, 64], count: 0), SWIFTCAM_STATUS_INPUT_SHAPE)
        XCTAssertEqual(forward([1, -3, 64, 64]), SWIFTCAM_STATUS_INPUT_SHAPE)
        XCTAssertEqual(forward([Int64.max, 3, 64, 64]), SWIFTCAM_STATUS_OUT_OF_MEMORY)
        XCTAssertEqual(swiftcam_model_forward(model, nil, [1, 3, 64, 64], &logits, 10, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_model_forward(nil, input, [1, 3, 64, 64], &logits, 10, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_model_forward(model, input, nil, &logits, 10, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        // A message buffer of one byte or none at all is fine.
        XCTAssertEqual(swiftcam_model_forward(model, input, [1, 4, 64, 64], &logits, 10, &message, 1), SWIFTCAM_STATUS_INPUT_SHAPE)
        XCTAssertEqual(message[0], 0)
        XCTAssertEqual(swiftcam_model_forward(model, input, [1, 4, 64, 64], &logits, 10, nil, 0), SWIFTCAM_STATUS_INPUT_SHAPE)

        var output = [Int64](repeating: 0, count: 4)
        XCTAssertEqual(swiftcam_model_layer_shape(model, 99, [1, 3, 64, 64], &output, &message, 512), SWIFTCAM_STATUS_UNKNOWN_LAYER)
        XCTAssertEqual(swiftcam_model_layer_shape(model, 12, [2, 3, 64, 64], &output, &message, 512), SWIFTCAM_STATUS_OK)
        XCTAssertEqual(output, [2, 128, 2, 2])

        var trace: OpaquePointer? = nil
        XCTAssertEqual(swiftcam_trace_create(model, input, [1, 3, 64, 64], [99], 1, &trace, &message, 512), SWIFTCAM_STATUS_UNKNOWN_LAYER)
        XCTAssertEqual(swiftcam_trace_create(model, input, [1, 3, 64, 64], [3, 3], 2, &trace, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_trace_create(model, input, [1, 3, 64, 64], [3], 0, &trace, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertNil(trace)
        swiftcam_model_free(nil)
        swiftcam_trace_free(nil)
    }

    func testTraceCAMAndBackwardThroughTheABI() throws {
        let model = try loadFixtureModel()
        defer { swiftcam_model_free(model) }
        let input = (0..<(2 * 3 * 40 * 36)).map { Float(sin(Double($0) * 0.37)) }
        let layer4: Int64 = 12
        var trace: OpaquePointer? = nil
        XCTAssertEqual(swiftcam_trace_create(model, input, [2, 3, 40, 36], [layer4], 1, &trace, &message, 512), SWIFTCAM_STATUS_OK, messageText)
        defer { swiftcam_trace_free(trace) }
        var logits = [Float](repeating: 0, count: 20)
        XCTAssertEqual(swiftcam_trace_logits(trace, &logits, 20, &message, 512), SWIFTCAM_STATUS_OK)

        // Two seeds per image: classes 0 and 1.
        var seeds = [Float](repeating: 0, count: 2 * 2 * 10)
        for image in 0..<2 { for k in 0..<2 { seeds[(image * 2 + k) * 10 + k] = 1 } }
        var options = swiftcam_cam_options(method: SWIFTCAM_METHOD_GRADCAM, eigen_smooth: 0, output_height: 40, output_width: 36)
        var heatmaps = [Float](repeating: -1, count: 2 * 2 * 40 * 36)
        var raw = [Float](repeating: 0, count: 2 * 2 * 2 * 2)  // (N, K, 2, 2) at layer4 for 40x36
        let status = raw.withUnsafeMutableBufferPointer { rawBuffer -> Int32 in
            let pointers: [UnsafeMutablePointer<Float>?] = [rawBuffer.baseAddress]
            return swiftcam_trace_cam(trace, &options, seeds, 2, &heatmaps, Int64(heatmaps.count), pointers, [Int64(rawBuffer.count)], &message, 512)
        }
        XCTAssertEqual(status, SWIFTCAM_STATUS_OK, messageText)
        XCTAssertTrue(heatmaps.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertEqual(swiftcam_trace_cam(trace, &options, seeds, 2, &heatmaps, 5, nil, nil, &message, 512), SWIFTCAM_STATUS_BUFFER_SIZE)
        XCTAssertEqual(swiftcam_trace_cam(trace, &options, nil, 2, &heatmaps, Int64(heatmaps.count), nil, nil, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        options.method = 42
        XCTAssertEqual(swiftcam_trace_cam(trace, &options, seeds, 2, &heatmaps, Int64(heatmaps.count), nil, nil, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertTrue(messageText.contains("unknown CAM method 42"), messageText)

        var gradient = [Float](repeating: 0, count: 2 * 2 * 128 * 2 * 2)
        let backward = gradient.withUnsafeMutableBufferPointer { buffer -> Int32 in
            let pointers: [UnsafeMutablePointer<Float>?] = [buffer.baseAddress]
            return swiftcam_trace_backward(trace, seeds, 2, pointers, [Int64(buffer.count)], &message, 512)
        }
        XCTAssertEqual(backward, SWIFTCAM_STATUS_OK, messageText)
        // At the last stage the gradient is fc.weight[c] / (h * w), the same at every position.
        XCTAssertEqual(gradient[0], gradient[1], accuracy: 1e-7)
        XCTAssertEqual(gradient[0], gradient[3], accuracy: 1e-7)
    }

    func testFullGradThroughTheABI() throws {
        let model = try loadFixtureModel()
        defer { swiftcam_model_free(model) }
        // basic: stem bn1; layer1.0 bn1, bn2; layer2.0 bn1, bn2, downsample.1; layer2.1 bn1, bn2;
        // layer3.0 and layer4.0 three each.
        XCTAssertEqual(swiftcam_model_bias_layer_count(model), 14)
        XCTAssertEqual(swiftcam_model_bias_layer_count(nil), -1)
        let input = (0..<(2 * 3 * 40 * 36)).map { Float(sin(Double($0) * 0.37)) }
        var seeds = [Float](repeating: 0, count: 2 * 2 * 10)  // (N, K = 2, classes): classes 0 and 1
        for image in 0..<2 { for k in 0..<2 { seeds[(image * 2 + k) * 10 + k] = 1 } }
        let terms = 3 + 14
        var perTerm = [Float](repeating: -1, count: 2 * 2 * terms * 20 * 18)
        var summed = [Float](repeating: -1, count: 2 * 2 * 20 * 18)

        // A trace without the input layer is refused with a message, not a trap.
        var trace: OpaquePointer? = nil
        XCTAssertEqual(swiftcam_trace_create(model, input, [2, 3, 40, 36], [12], 1, &trace, &message, 512), SWIFTCAM_STATUS_OK, messageText)
        XCTAssertEqual(swiftcam_trace_fullgrad(trace, seeds, 2, 1, 20, 18, &summed, Int64(summed.count), &message, 512),
                       SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertTrue(messageText.contains("SWIFTCAM_LAYER_INPUT"), messageText)
        swiftcam_trace_free(trace)

        XCTAssertEqual(swiftcam_trace_create(model, input, [2, 3, 40, 36], [Int64(SWIFTCAM_LAYER_INPUT)], 1, &trace, &message, 512),
                       SWIFTCAM_STATUS_OK, messageText)
        defer { swiftcam_trace_free(trace) }
        XCTAssertEqual(swiftcam_trace_fullgrad(trace, seeds, 2, 0, 20, 18, &perTerm, Int64(perTerm.count), &message, 512), SWIFTCAM_STATUS_OK, messageText)
        XCTAssertEqual(swiftcam_trace_fullgrad(trace, seeds, 2, 1, 20, 18, &summed, Int64(summed.count), &message, 512), SWIFTCAM_STATUS_OK, messageText)
        XCTAssertTrue(perTerm.allSatisfy { $0 >= 0 })  // each term is a sum of maps in [0, 1]
        let plane = 20 * 18
        let total = (0..<plane).reduce(Float(0)) { sum, p in sum + (0..<terms).reduce(0) { $0 + perTerm[$1 * plane + p] } }
        XCTAssertEqual(total, summed[0..<plane].reduce(0, +), accuracy: 1e-5 * total)

        // Wrong counts, NULLs, bad sizes and K.
        XCTAssertEqual(swiftcam_trace_fullgrad(trace, seeds, 2, 0, 20, 18, &perTerm, Int64(perTerm.count - 1), &message, 512), SWIFTCAM_STATUS_BUFFER_SIZE)
        XCTAssertTrue(messageText.contains("expected \(perTerm.count)"), messageText)
        XCTAssertEqual(swiftcam_trace_fullgrad(trace, seeds, 2, 1, 20, 18, &summed, Int64(perTerm.count), &message, 512), SWIFTCAM_STATUS_BUFFER_SIZE)
        XCTAssertEqual(swiftcam_trace_fullgrad(trace, seeds, 2, 1, 20, 18, nil, Int64(summed.count), &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_trace_fullgrad(trace, nil, 2, 1, 20, 18, &summed, Int64(summed.count), &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_trace_fullgrad(trace, seeds, 0, 1, 20, 18, &summed, 0, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_trace_fullgrad(trace, seeds, 2, 1, 0, 18, &summed, 0, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_trace_fullgrad(trace, seeds, 2, 1, Int64.max, Int64.max, &summed, 1, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_trace_fullgrad(nil, seeds, 2, 1, 20, 18, &summed, Int64(summed.count), &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
    }

    func testCorruptFileIsAnInvalidFileStatus() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftcam-corrupt-\(UUID().uuidString).safetensors")
        try Data([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0x7B]).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        var model: OpaquePointer? = nil
        XCTAssertEqual(swiftcam_model_load_file(url.path, &model, &message, 512), SWIFTCAM_STATUS_INVALID_FILE)
        XCTAssertNil(model)
        XCTAssertEqual(swiftcam_model_load_file(nil, &model, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_model_load_tensors(nil, 3, &model, &message, 512), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_model_load_tensors(nil, 0, &model, &message, 512), SWIFTCAM_STATUS_UNSUPPORTED_MODEL)
    }

    /// Calls swiftcam_model_update_tensors with a fixture's tensors, `edit` applied to their values.
    private func update(_ model: OpaquePointer, from fixtureName: String, edit: (String, inout [Float]) -> Void = { _, _ in }) throws -> Int32 {
        let file = try Fixture(fixtureName).weights
        var names = file.entries.filter { $0.dtype.isFloatingPoint }.map(\.name)
        var values = try names.map { try file.floats(of: $0) }
        for index in names.indices { edit(names[index], &values[index]) }
        var shapes = names.map { file.shape(of: $0)!.map(Int64.init) }
        let cNames = names.map { strdup($0) }
        defer { cNames.forEach { free($0) } }
        names = []
        return values.withUnsafeMutableBufferPointer { valueArrays in
            shapes.withUnsafeMutableBufferPointer { shapeArrays in
                let views = (0..<valueArrays.count).map { index in
                    swiftcam_tensor_view(name: cNames[index], data: valueArrays[index].withUnsafeBufferPointer { $0.baseAddress },
                                         shape: shapeArrays[index].withUnsafeBufferPointer { $0.baseAddress },
                                         rank: Int64(shapeArrays[index].count))
                }
                return swiftcam_model_update_tensors(model, views, Int64(views.count), &message, Int64(message.count))
            }
        }
    }

    func testUpdatingWeightsKeepsTheHandleAndChangesTheResults() throws {
        let model = try loadFixtureModel("basic")
        defer { swiftcam_model_free(model) }
        let input = [Float](repeating: 0.25, count: 3 * 32 * 32)
        var before = [Float](repeating: 0, count: 10)
        var after = [Float](repeating: 0, count: 10)
        XCTAssertEqual(swiftcam_model_forward(model, input, [1, 3, 32, 32], &before, 10, &message, 512), SWIFTCAM_STATUS_OK)
        XCTAssertEqual(try update(model, from: "basic") { name, values in
            if name == "fc.bias" { values = values.map { $0 + 1 } }
        }, SWIFTCAM_STATUS_OK, messageText)
        XCTAssertEqual(swiftcam_model_forward(model, input, [1, 3, 32, 32], &after, 10, &message, 512), SWIFTCAM_STATUS_OK)
        for (a, b) in zip(before, after) { XCTAssertEqual(b, a + 1, accuracy: 1e-5) }
        // Another architecture is refused, and the model keeps working with its weights.
        XCTAssertEqual(try update(model, from: "grouped"), SWIFTCAM_STATUS_WEIGHT_ERROR)
        XCTAssertTrue(messageText.contains("another architecture"), messageText)
        var again = [Float](repeating: 0, count: 10)
        XCTAssertEqual(swiftcam_model_forward(model, input, [1, 3, 32, 32], &again, 10, &message, 512), SWIFTCAM_STATUS_OK)
        XCTAssertEqual(again, after)
        XCTAssertEqual(String(cString: swiftcam_model_layer_name(model, 0)), "conv1")
    }

    func testThreadsCanBeSet() {
        let before = swiftcam_get_num_threads()
        XCTAssertEqual(swiftcam_set_num_threads(1), SWIFTCAM_STATUS_OK)
        XCTAssertEqual(swiftcam_get_num_threads(), 1)
        XCTAssertEqual(swiftcam_set_num_threads(0), SWIFTCAM_STATUS_INVALID_ARGUMENT)
        XCTAssertEqual(swiftcam_set_num_threads(before), SWIFTCAM_STATUS_OK)
        XCTAssertFalse(String(cString: swiftcam_blas_core_name()).isEmpty)
    }
}

import Foundation
