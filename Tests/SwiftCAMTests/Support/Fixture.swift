// Fixture: one reference case written by tools/generate_fixtures.py (PyTorch + pytorch-grad-cam):
// Tests/Fixtures/<case>/{weights.safetensors, expected.safetensors, meta.json}. The Python suite
// reads the same files, so the two suites check each other.

import Foundation
import XCTest
@testable import SwiftCAM

struct Fixture {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static let cases = ["basic", "bottleneck", "grouped", "wide"]

    let name: String
    let meta: JSONValue
    let weights: SafeTensorsFile
    let expected: SafeTensorsFile

    /// Loads a case, failing with a hint when the generator has not been run.
    init(_ name: String) throws {
        let folder = Fixture.directory.appendingPathComponent(name)
        let metaURL = folder.appendingPathComponent("meta.json")
        guard FileManager.default.fileExists(atPath: metaURL.path) else {
            throw FixtureMissing(path: metaURL.path)
        }
        self.name = name
        self.meta = try JSONValue.parse(String(decoding: try Data(contentsOf: metaURL), as: UTF8.self))
        self.weights = try SafeTensorsFile(path: folder.appendingPathComponent("weights.safetensors").path)
        self.expected = try SafeTensorsFile(path: folder.appendingPathComponent("expected.safetensors").path)
    }

    /// An expected tensor's shape and values.
    func tensor(_ key: String) throws -> (shape: [Int], values: [Float]) {
        guard let entry = expected.entry(named: key) else {
            throw FixtureMissing(path: "\(name)/expected.safetensors[\(key)] (stale fixture? re-run `make fixtures`)")
        }
        return (entry.shape, try expected.floats(of: entry))
    }

    var inputShape: ActivationShape {
        let dims = ints(meta["input_shape"])
        return ActivationShape(batch: dims[0], channels: dims[1], height: dims[2], width: dims[3])
    }

    func network() throws -> Network { try ResNetBuilder.build(from: weights) }
}

struct FixtureMissing: Error, CustomStringConvertible {
    let path: String
    var description: String { "missing fixture \(path): run `make fixtures` (tools/generate_fixtures.py, needs torch)" }
}

func ints(_ value: JSONValue?) -> [Int] {
    guard case .array(let items)? = value else { return [] }
    return items.compactMap { if case .number(let n) = $0 { Int(n) } else { nil } }
}

func strings(_ value: JSONValue?) -> [String] {
    guard case .array(let items)? = value else { return [] }
    return items.compactMap { if case .string(let s) = $0 { s } else { nil } }
}

/// max |a - b| over two equal-length arrays (fails the test on a length mismatch).
func maxAbsDifference(_ a: [Float], _ b: UnsafeBufferPointer<Float>, file: StaticString = #filePath, line: UInt = #line) -> Float {
    XCTAssertEqual(a.count, b.count, "length mismatch", file: file, line: line)
    var worst: Float = 0
    for (x, y) in zip(a, b) { worst = max(worst, abs(x - y)) }
    if a.contains(where: \.isNaN) || b.contains(where: \.isNaN) { return .infinity }
    return worst
}

func maxAbs(_ values: [Float]) -> Float { values.map(abs).max() ?? 0 }
