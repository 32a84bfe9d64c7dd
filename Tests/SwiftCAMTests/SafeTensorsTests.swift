// SafeTensorsTests: the safetensors reader on well-formed and hostile files (lying headers,
// overlapping or out-of-range offsets, bad dtypes, truncation), and the weight checks of the
// ResNet builder (missing, unexpected, mis-shaped tensors). Every failure must be a thrown error.

import Foundation
import XCTest
@testable import SwiftCAM

final class SafeTensorsTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swiftcam-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Writes a safetensors file from a header string and a data section.
    private func write(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) throws -> String {
        let headerBytes = Array(header.utf8)
        var bytes: [UInt8] = []
        var length = (declaredLength ?? UInt64(headerBytes.count)).littleEndian
        withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
        bytes += headerBytes + data
        let url = directory.appendingPathComponent("\(UUID().uuidString).safetensors")
        try Data(bytes).write(to: url)
        return url.path
    }

    private func floatBytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { value -> [UInt8] in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
    }

    private func assertInvalid(_ path: String, contains fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(path: path), file: file, line: line) { error in
            guard let error = error as? SwiftCAMError else { return XCTFail("not a SwiftCAMError: \(error)", file: file, line: line) }
            XCTAssertTrue(error.message.contains(fragment), "message '\(error.message)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    func testReadsFloat32Float16BFloat16AndFloat64() throws {
        let values: [Float] = [1.5, -2.25, 0, 1024]
        let f16 = values.flatMap { v -> [UInt8] in withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { Array($0) } }
        let bf16 = values.flatMap { v -> [UInt8] in withUnsafeBytes(of: UInt16(v.bitPattern >> 16).littleEndian) { Array($0) } }
        let f64 = values.flatMap { v -> [UInt8] in withUnsafeBytes(of: Double(v).bitPattern.littleEndian) { Array($0) } }
        let data = floatBytes(values) + f16 + bf16 + f64
        let header = """
        {"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},\
        "b":{"dtype":"F16","shape":[4],"data_offsets":[16,24]},"c":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]},\
        "d":{"dtype":"F64","shape":[4],"data_offsets":[32,64]}}
        """
        let file = try SafeTensorsFile(path: try write(header: header, data: data))
        XCTAssertEqual(file.metadata["format"], "pt")
        for name in ["a", "b", "c", "d"] {
            XCTAssertEqual(try file.floats(of: name), values, name)
        }
        XCTAssertEqual(file.shape(of: "a"), [2, 2])
    }

    func testRejectsTooShortFile() throws {
        let url = directory.appendingPathComponent("short.safetensors")
        try Data([1, 2, 3]).write(to: url)
        assertInvalid(url.path, contains: "too short")
    }

    func testRejectsHeaderLengthPastTheEnd() throws {
        assertInvalid(try write(header: "{}", declaredLength: 1 << 40), contains: "header claims")
    }

    func testRejectsMalformedJSON() throws {
        assertInvalid(try write(header: "{\"a\": {\"dtype\": \"F32\""), contains: "malformed JSON")
        assertInvalid(try write(header: "[1, 2]"), contains: "not a JSON object")
        assertInvalid(try write(header: String(repeating: "[", count: 500)), contains: "nesting")
    }

    func testRejectsUnknownDtype() throws {
        let path = try write(header: #"{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}"#, data: [0])
        assertInvalid(path, contains: "unknown dtype 'F8'")
    }

    func testRejectsOffsetsPastTheData() throws {
        let path = try write(header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: floatBytes([1, 2]))
        assertInvalid(path, contains: "data_offsets")
    }

    func testRejectsSizeThatDisagreesWithShape() throws {
        let path = try write(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: floatBytes([1, 2]))
        assertInvalid(path, contains: "needs 12 bytes")
    }

    func testRejectsOverlappingTensors() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertInvalid(try write(header: header, data: floatBytes([1, 2, 3])), contains: "overlap")
    }

    func testRejectsOverlapHiddenBehindAnEmptyTensor() throws {
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        assertInvalid(try write(header: header, data: floatBytes([1, 2, 3])), contains: "overlap")
        // A tensor nested inside a longer one overlaps too, even when a third sorts between them.
        let nested = #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"c":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}"#
        assertInvalid(try write(header: nested, data: floatBytes([1, 2, 3, 4])), contains: "overlap")
    }

    func testRejectsNegativeAndFractionalShapes() throws {
        assertInvalid(try write(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#), contains: "non-negative")
        assertInvalid(try write(header: #"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}}"#), contains: "non-negative")
    }

    func testRejectsHugeShapeWithoutOverflowTrap() throws {
        let header = #"{"a":{"dtype":"F64","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,0]}}"#
        assertInvalid(try write(header: header), contains: "too large")
    }

    func testMissingFileIsAnIOError() {
        XCTAssertThrowsError(try SafeTensorsFile(path: directory.appendingPathComponent("absent.safetensors").path)) { error in
            XCTAssertEqual((error as? SwiftCAMError)?.statusCode, 2)
        }
        XCTAssertThrowsError(try SafeTensorsFile(path: directory.path)) { error in
            XCTAssertEqual((error as? SwiftCAMError)?.message.contains("not a regular file"), true)
        }
    }

    func testTruncatedFixtureFails() throws {
        let original = try Data(contentsOf: Fixture.directory.appendingPathComponent("basic/weights.safetensors"))
        let url = directory.appendingPathComponent("truncated.safetensors")
        try original.prefix(original.count / 2).write(to: url)
        XCTAssertThrowsError(try SafeTensorsFile(path: url.path)) { error in
            XCTAssertEqual((error as? SwiftCAMError)?.statusCode, 3, "\(error)")
        }
    }
}
