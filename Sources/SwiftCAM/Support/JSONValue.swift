// JSONValue: a small, strict JSON parser for safetensors headers. The engine avoids Foundation
// (it would add megabytes to libswiftcam.so), and the parser must never trap on hostile input:
// depth and size are bounded, and every error is a thrown SwiftCAMError.invalidFile.

/// A parsed JSON document.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): true
        case let (.bool(a), .bool(b)): a == b
        case let (.number(a), .number(b)): a == b
        case let (.string(a), .string(b)): a == b
        case let (.array(a), .array(b)): a == b
        case let (.object(a), .object(b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// Parses UTF-8 bytes holding exactly one JSON value (surrounding whitespace allowed).
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(SwiftCAMError) -> JSONValue {
        var parser = JSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.failure("trailing characters") }
        return value
    }

    public static func parse(_ text: String) throws(SwiftCAMError) -> JSONValue {
        let bytes = Array(text.utf8)
        var result: Result<JSONValue, SwiftCAMError> = .failure(.invalidFile("empty"))
        bytes.withUnsafeBytes { raw in
            do throws(SwiftCAMError) { result = .success(try parse(raw)) } catch { result = .failure(error) }
        }
        return try result.get()
    }

    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.0 == key }?.1
    }
}

private struct JSONParser {
    let bytes: UnsafeRawBufferPointer
    var position = 0
    static let maximumDepth = 64

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    func failure(_ what: String) -> SwiftCAMError {
        .invalidFile("malformed JSON header: \(what) at byte \(position)")
    }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    mutating func expect(_ literal: StaticString) throws(SwiftCAMError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw failure("unexpected end") }
        for i in 0..<count where bytes[position + i] != literal.utf8Start[i] {
            throw failure("invalid literal")
        }
        position += count
    }

    mutating func parseValue(depth: Int) throws(SwiftCAMError) -> JSONValue {
        guard depth < Self.maximumDepth else { throw failure("nesting deeper than \(Self.maximumDepth)") }
        guard let byte = peek() else { throw failure("unexpected end") }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject(depth: depth)
        case UInt8(ascii: "["): return try parseArray(depth: depth)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expect("true"); return .bool(true)
        case UInt8(ascii: "f"): try expect("false"); return .bool(false)
        case UInt8(ascii: "n"): try expect("null"); return .null
        default: return .number(try parseNumber())
        }
    }

    mutating func parseObject(depth: Int) throws(SwiftCAMError) -> JSONValue {
        position += 1
        var members: [(String, JSONValue)] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { position += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw failure("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw failure("expected ':'") }
            position += 1
            skipWhitespace()
            members.append((key, try parseValue(depth: depth + 1)))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "}"): position += 1; return .object(members)
            default: throw failure("expected ',' or '}'")
            }
        }
    }

    mutating func parseArray(depth: Int) throws(SwiftCAMError) -> JSONValue {
        position += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") { position += 1; return .array(elements) }
        while true {
            skipWhitespace()
            elements.append(try parseValue(depth: depth + 1))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): position += 1
            case UInt8(ascii: "]"): position += 1; return .array(elements)
            default: throw failure("expected ',' or ']'")
            }
        }
    }

    mutating func parseString() throws(SwiftCAMError) -> String {
        position += 1  // opening quote
        var scalars = String.UnicodeScalarView()
        var utf8Run: [UInt8] = []
        func flush() {
            if !utf8Run.isEmpty {
                scalars.append(contentsOf: String(decoding: utf8Run, as: UTF8.self).unicodeScalars)
                utf8Run.removeAll(keepingCapacity: true)
            }
        }
        while true {
            guard let byte = peek() else { throw failure("unterminated string") }
            position += 1
            switch byte {
            case UInt8(ascii: "\""):
                flush()
                return String(scalars)
            case UInt8(ascii: "\\"):
                flush()
                guard let escape = peek() else { throw failure("unterminated escape") }
                position += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try parseHex4()
                    if (0xD800..<0xDC00).contains(code), bytes.count - position >= 6,
                       bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") {
                        position += 2
                        let low = try parseHex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw failure("invalid surrogate pair") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                default: throw failure("invalid escape")
                }
            case 0..<0x20:
                throw failure("control character in string")
            default:
                utf8Run.append(byte)
            }
        }
    }

    mutating func parseHex4() throws(SwiftCAMError) -> UInt32 {
        guard bytes.count - position >= 4 else { throw failure("truncated \\u escape") }
        var code: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[position]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw failure("invalid hex digit")
            }
            code = code << 4 | digit
            position += 1
        }
        return code
    }

    mutating func parseNumber() throws(SwiftCAMError) -> Double {
        let start = position
        let allowed: Set<UInt8> = Set("+-0123456789.eE".utf8)
        while let byte = peek(), allowed.contains(byte) { position += 1 }
        guard position > start, position - start <= 64 else { throw failure("invalid number") }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else { throw failure("invalid number '\(text)'") }
        return value
    }
}
