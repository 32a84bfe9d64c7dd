// FloatBuffer: an owned, 64-byte-aligned block of Float32 used for every activation, gradient and
// weight in the engine. Large blocks are recycled through BlockCache. A class so that buffers can be shared (e.g. a layer's output is also the
// next layer's input and a trace's saved activation) without copies.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An owned, uninitialised-then-written array of `Float`, aligned for SIMD and BLAS.
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    /// False for a view of memory someone else owns (a caller's input array).
    private let ownsMemory: Bool
    /// Bytes allocated (owned buffers only).
    private let bytes: Int

    /// Allocates `count` floats, or throws `SwiftCAMError.outOfMemory` instead of trapping.
    public init(count: Int) throws(SwiftCAMError) {
        guard count >= 0 else { throw .invalidArgument("negative buffer size \(count)") }
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Float>.stride)
        guard !overflow, bytes <= Int.max / 2 else {
            throw .outOfMemory("cannot allocate \(count) floats")
        }
        var raw = BlockCache.take(bytes: bytes)
        if raw == nil {
            guard posix_memalign(&raw, 64, bytes) == 0, raw != nil else {
                throw .outOfMemory("cannot allocate \(bytes) bytes")
            }
        }
        guard let raw else { throw .outOfMemory("cannot allocate \(bytes) bytes") }
        self.count = count
        self.bytes = bytes
        self.pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.ownsMemory = true
    }

    /// A view of `count` floats at `pointer`, owned by the caller, who keeps them alive and
    /// unchanged while the view is in use. Lets inputs reach the kernels without a copy.
    public init(borrowing pointer: UnsafePointer<Float>, count: Int) {
        self.count = count
        self.pointer = UnsafeMutablePointer(mutating: pointer)
        self.ownsMemory = false
        self.bytes = 0
    }

    /// Allocates a buffer holding a copy of `values`.
    public convenience init(copying values: UnsafeBufferPointer<Float>) throws(SwiftCAMError) {
        try self.init(count: values.count)
        if let base = values.baseAddress { pointer.update(from: base, count: values.count) }
    }

    /// Allocates a buffer holding a copy of `values`.
    public convenience init(_ values: [Float]) throws(SwiftCAMError) {
        try self.init(count: values.count)
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { if ownsMemory { BlockCache.give(UnsafeMutableRawPointer(pointer), bytes: bytes) } }

    public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }

    public func fill(with value: Float) { pointer.update(repeating: value, count: count) }

    public func toArray() -> [Float] { Array(buffer) }
}
