// BlockCache: large freed buffers kept for reuse. A forward pass allocates and frees the same
// activation sizes on every call; returned to the system, each would come back as fresh pages
// the kernel must fault in and zero (5-10% of a batch-8 resnet50 forward pass). Blocks are
// matched by exact size, since shapes repeat from call to call and block to block.

import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum BlockCache {
    /// Blocks below this size stay with malloc, which reuses small blocks well by itself.
    static let minimumBytes = 1 << 20
    /// The most memory the cache holds; a block freed beyond it goes back to malloc.
    static let capacityBytes = 256 << 20

    private struct State {
        var blocks: [Int: [Int]] = [:]  // bytes -> addresses of 64-byte-aligned blocks
        var totalBytes = 0
    }

    private static let state = Mutex(State())

    /// The process whose blocks these are. A child forked while another thread held the lock
    /// would wait on it forever, so a forked child bypasses the cache (plain malloc and free).
    private static let owner = getpid()

    private static var usable: Bool { getpid() == owner }

    /// A cached block of exactly `bytes`, or nil.
    static func take(bytes: Int) -> UnsafeMutableRawPointer? {
        guard bytes >= minimumBytes, usable else { return nil }
        let address = state.withLock { state -> Int? in
            guard let address = state.blocks[bytes]?.popLast() else { return nil }
            state.totalBytes -= bytes
            return address
        }
        return address.flatMap { UnsafeMutableRawPointer(bitPattern: $0) }
    }

    /// Keeps `block` (of `bytes`) for reuse, or frees it when the cache is full or it is small.
    static func give(_ block: UnsafeMutableRawPointer, bytes: Int) {
        let address = Int(bitPattern: block)
        let kept = bytes >= minimumBytes && usable && state.withLock { state in
            guard state.totalBytes + bytes <= capacityBytes else { return false }
            state.blocks[bytes, default: []].append(address)
            state.totalBytes += bytes
            return true
        }
        if !kept { free(block) }
    }
}
