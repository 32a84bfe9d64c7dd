// BlockCacheTests: large freed buffers are reused by exact size, small ones are not cached, and
// the cache never holds more than its capacity.

@testable import SwiftCAM
import XCTest

final class BlockCacheTests: XCTestCase {
    func testLargeBuffersAreReusedBySize() throws {
        let floats = (BlockCache.minimumBytes / 4) + 12_345  // an odd size no other test uses
        var address: UnsafeMutablePointer<Float>?
        do {
            let buffer = try FloatBuffer(count: floats)
            buffer.fill(with: 1)
            address = buffer.pointer
        }
        let again = try FloatBuffer(count: floats)
        XCTAssertEqual(again.pointer, address, "the freed block should come back for the same size")
        XCTAssertEqual(Int(bitPattern: again.pointer) % 64, 0)
        let other = try FloatBuffer(count: floats + 16)
        XCTAssertNotEqual(other.pointer, address)
    }

    func testSmallBlocksAndOverflowGoBackToMalloc() throws {
        XCTAssertNil(BlockCache.take(bytes: BlockCache.minimumBytes - 64))
        // Blocks beyond the capacity are freed, not kept: give more than fits, take them back.
        let bytes = BlockCache.capacityBytes / 3 + 64
        var raw: UnsafeMutableRawPointer? = nil
        var given: [Int] = []
        for _ in 0..<4 {
            XCTAssertEqual(posix_memalign(&raw, 64, bytes), 0)
            given.append(Int(bitPattern: raw!))
            BlockCache.give(raw!, bytes: bytes)
        }
        var taken: [UnsafeMutableRawPointer] = []
        while let block = BlockCache.take(bytes: bytes) { taken.append(block) }
        XCTAssertLessThanOrEqual(taken.count, 2, "at most capacity / size blocks are kept")
        XCTAssert(taken.allSatisfy { given.contains(Int(bitPattern: $0)) })
        taken.forEach { free($0) }
    }
}
