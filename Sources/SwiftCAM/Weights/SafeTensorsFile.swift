// SafeTensorsFile: reads a .safetensors file through a read-only memory map. The header is
// validated completely (offsets inside the data, sizes matching shapes, no overlaps, bounded
// header length) before any tensor is touched, so a hostile file yields an error, never a trap.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element types of the safetensors format.
public enum TensorDType: String, Sendable {
    case float64 = "F64", float32 = "F32", float16 = "F16", bfloat16 = "BF16"
    case int64 = "I64", int32 = "I32", int16 = "I16", int8 = "I8", uint8 = "U8", bool = "BOOL"

    public var byteSize: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float64, .float32, .float16, .bfloat16: true
        default: false
        }
    }
}

/// One tensor's record in a safetensors header.
public struct SafeTensorsEntry: Sendable {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    /// Byte range inside the data section (after the header).
    public let byteRange: Range<Int>
}

/// A memory-mapped safetensors file. Tensor bytes are read from the mapping; nothing is copied
/// until a tensor is converted to `Float`.
public final class SafeTensorsFile: @unchecked Sendable {
    /// Headers larger than this are rejected (real ones are a few hundred kilobytes).
    public static let maximumHeaderLength = 100 * 1024 * 1024

    public let path: String
    public let entries: [SafeTensorsEntry]
    public let metadata: [String: String]
    private let mapping: UnsafeRawPointer
    private let mappingLength: Int
    private let dataOffset: Int
    private let entryIndex: [String: Int]

    public init(path: String) throws(SwiftCAMError) {
        self.path = path
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw .ioError("cannot open '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw .ioError("cannot stat '\(path)': \(String(cString: strerror(errno)))")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw .ioError("'\(path)' is not a regular file")
        }
        let length = Int(status.st_size)
        guard length >= 8 else {
            throw .invalidFile("'\(path)' is not a safetensors file: \(length) bytes, too short for the 8-byte header length")
        }
        guard let mapped = mmap(nil, length, PROT_READ, MAP_PRIVATE, descriptor, 0), mapped != MAP_FAILED else {
            throw .ioError("cannot map '\(path)': \(String(cString: strerror(errno)))")
        }
        let base = UnsafeRawPointer(mapped)
        do {
            let header = try Self.parseHeader(base: base, length: length, path: path)
            self.entries = header.entries
            self.metadata = header.metadata
            self.dataOffset = header.dataOffset
        } catch {
            munmap(mapped, length)
            throw error
        }
        self.mapping = base
        self.mappingLength = length
        var index: [String: Int] = [:]
        for (position, entry) in entries.enumerated() { index[entry.name] = position }
        self.entryIndex = index
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: mapping), mappingLength) }

    public func entry(named name: String) -> SafeTensorsEntry? {
        entryIndex[name].map { entries[$0] }
    }

    /// The raw bytes of a tensor, valid while this file is alive.
    public func bytes(of entry: SafeTensorsEntry) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: mapping + dataOffset + entry.byteRange.lowerBound, count: entry.byteRange.count)
    }

    /// The tensor converted to Float32 (from F32, F16, BF16 or F64).
    public func floats(of entry: SafeTensorsEntry) throws(SwiftCAMError) -> [Float] {
        try convertToFloat(bytes(of: entry), dtype: entry.dtype, name: entry.name)
    }

    private struct Header {
        var entries: [SafeTensorsEntry]
        var metadata: [String: String]
        var dataOffset: Int
    }

    private static func parseHeader(base: UnsafeRawPointer, length: Int, path: String) throws(SwiftCAMError) -> Header {
        let headerLength = UInt64(littleEndian: base.loadUnaligned(as: UInt64.self))
        guard headerLength <= UInt64(min(length - 8, maximumHeaderLength)) else {
            throw .invalidFile("'\(path)' is not a valid safetensors file: its header claims \(headerLength) bytes but the file has \(length - 8) after the length field")
        }
        let dataOffset = 8 + Int(headerLength)
        let dataLength = length - dataOffset
        let json = try JSONValue.parse(UnsafeRawBufferPointer(start: base + 8, count: Int(headerLength)))
        guard case .object(let members) = json else {
            throw .invalidFile("'\(path)': the safetensors header is not a JSON object")
        }
        var entries: [SafeTensorsEntry] = []
        var metadata: [String: String] = [:]
        var seen = Set<String>()
        for (name, value) in members {
            guard seen.insert(name).inserted else {
                throw .invalidFile("'\(path)': tensor '\(name)' appears twice in the header")
            }
            if name == "__metadata__" {
                guard case .object(let pairs) = value else {
                    throw .invalidFile("'\(path)': __metadata__ must be an object of strings")
                }
                for (key, item) in pairs {
                    guard case .string(let text) = item else {
                        throw .invalidFile("'\(path)': __metadata__['\(key)'] is not a string")
                    }
                    metadata[key] = text
                }
                continue
            }
            entries.append(try parseEntry(name: name, value: value, dataLength: dataLength, path: path))
        }
        // Non-empty byte ranges, in order of their start, must not overlap: compare each with the
        // one reaching furthest so far (empty tensors own no bytes and are skipped).
        let sorted = entries.filter { !$0.byteRange.isEmpty }.sorted { $0.byteRange.lowerBound < $1.byteRange.lowerBound }
        var furthest: SafeTensorsEntry? = nil
        for entry in sorted {
            if let previous = furthest, entry.byteRange.lowerBound < previous.byteRange.upperBound {
                throw .invalidFile("'\(path)': the data of tensors '\(previous.name)' and '\(entry.name)' overlap")
            }
            if entry.byteRange.upperBound > furthest?.byteRange.upperBound ?? 0 { furthest = entry }
        }
        return Header(entries: entries, metadata: metadata, dataOffset: dataOffset)
    }

    private static func parseEntry(name: String, value: JSONValue, dataLength: Int, path: String) throws(SwiftCAMError) -> SafeTensorsEntry {
        func bad(_ what: String) -> SwiftCAMError { .invalidFile("'\(path)': tensor '\(name)': \(what)") }
        guard case .string(let dtypeName)? = value["dtype"] else { throw bad("missing dtype") }
        guard let dtype = TensorDType(rawValue: dtypeName) else {
            throw bad("unknown dtype '\(dtypeName)' (expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)")
        }
        guard case .array(let shapeValues)? = value["shape"] else { throw bad("missing shape") }
        var shape: [Int] = []
        var elementCount = 1
        for item in shapeValues {
            guard case .number(let dimension) = item, dimension >= 0, dimension <= Double(Int32.max),
                  dimension == dimension.rounded() else {
                throw bad("shape entries must be non-negative integers")
            }
            shape.append(Int(dimension))
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: Int(dimension))
            guard !overflow else { throw bad("shape \(shape) is too large") }
            elementCount = product
        }
        guard case .array(let offsets)? = value["data_offsets"], offsets.count == 2,
              case .number(let begin) = offsets[0], case .number(let end) = offsets[1],
              begin >= 0, end >= begin, end <= Double(dataLength),
              begin == begin.rounded(), end == end.rounded() else {
            throw bad("data_offsets must be two integers [begin, end] with 0 <= begin <= end <= \(dataLength) (the data section's size)")
        }
        let (byteCount, overflow) = elementCount.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, byteCount == Int(end) - Int(begin) else {
            throw bad("shape \(shape) of \(dtypeName) needs \(overflow ? "too many" : String(byteCount)) bytes but data_offsets span \(Int(end) - Int(begin))")
        }
        return SafeTensorsEntry(name: name, dtype: dtype, shape: shape, byteRange: Int(begin)..<Int(end))
    }
}

/// Converts little-endian F32/F16/BF16/F64 bytes to Float32; `name` is for the error message.
func convertToFloat(_ bytes: UnsafeRawBufferPointer, dtype: TensorDType, name: String) throws(SwiftCAMError) -> [Float] {
    let count = bytes.count / dtype.byteSize
    guard let base = bytes.baseAddress, count > 0 else { return [] }
    switch dtype {
    case .float32:
        return [Float](unsafeUninitializedCapacity: count) { output, initialized in
            memcpy(output.baseAddress!, base, count * 4)
            initialized = count
        }
    case .float64:
        return (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))) }
    case .float16:
        return (0..<count).map { Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)))) }
    case .bfloat16:
        return (0..<count).map { Float(bitPattern: UInt32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) << 16) }
    default:
        throw .weightError("tensor '\(name)' has dtype \(dtype.rawValue); weights must be floating point (F32, F16, BF16 or F64)")
    }
}
