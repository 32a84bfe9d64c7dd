// Status: turning Swift errors into the C ABI's status codes and caller-buffer messages, and the
// argument checks every exported function shares (pointers, shapes, buffer sizes).

import SwiftCAM

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body`; on error writes its message to (message, capacity) and returns its status.
func withStatus(_ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64,
                _ body: () throws(SwiftCAMError) -> Void) -> Int32 {
    do {
        try body()
        return 0
    } catch {
        write(error.message, to: message, capacity: capacity)
        return error.statusCode
    }
}

/// Copies `text` as a NUL-terminated string, truncated at a character boundary to fit `capacity` bytes.
func write(_ text: String, to message: UnsafeMutablePointer<CChar>?, capacity: Int64) {
    guard let message, capacity > 0 else { return }
    var length = 0
    for scalar in text.unicodeScalars {
        let bytes = Array(String(scalar).utf8)
        guard Int64(length + bytes.count) < capacity else { break }
        for byte in bytes {
            message[length] = CChar(bitPattern: byte)
            length += 1
        }
    }
    message[length] = 0
}

/// Reads an (N, C, H, W) shape from a caller's int64[4].
func readInputShape(_ pointer: UnsafePointer<Int64>?) throws(SwiftCAMError) -> ActivationShape {
    guard let pointer else { throw .invalidArgument("input_shape is NULL") }
    let dims = (0..<4).map { Int(pointer[$0]) }
    guard dims.allSatisfy({ $0 >= 0 }) else { throw .inputShape("the input shape \(dims) has a negative dimension") }
    var total = 1
    for dimension in dims {
        let (product, overflow) = total.multipliedReportingOverflow(by: dimension)
        guard !overflow else { throw .outOfMemory("the input shape \(dims) is too large") }
        total = product
    }
    return ActivationShape(batch: dims[0], channels: dims[1], height: dims[2], width: dims[3])
}

/// Checks a caller's output buffer: non-NULL and exactly `expected` elements.
func checkBuffer<T>(_ pointer: UnsafeMutablePointer<T>?, count: Int64, expected: Int, name: String) throws(SwiftCAMError) -> UnsafeMutablePointer<T> {
    guard let pointer else { throw .invalidArgument("\(name) is NULL") }
    guard count == Int64(expected) else {
        throw .bufferSize("\(name) has \(count) elements, expected \(expected)")
    }
    return pointer
}

func requireNonNull<T>(_ pointer: UnsafePointer<T>?, _ name: String) throws(SwiftCAMError) -> UnsafePointer<T> {
    guard let pointer else { throw .invalidArgument("\(name) is NULL") }
    return pointer
}
