// SwiftCAMError: every failure the engine reports. Each case maps to one status code of the C ABI
// (Sources/CSwiftCAM/include/swiftcam.h) and carries a message meant for the end user.

/// An error raised by the engine, with a message that says what was wrong and what is expected.
public enum SwiftCAMError: Error, Equatable, CustomStringConvertible {
    case invalidArgument(String)
    case ioError(String)
    case invalidFile(String)
    case weightError(String)
    case unsupportedModel(String)
    case inputShape(String)
    case outOfMemory(String)
    case unknownLayer(String)
    case bufferSize(String)

    /// The status code of the C ABI (append-only; keep in step with swiftcam.h).
    public var statusCode: Int32 {
        switch self {
        case .invalidArgument: 1
        case .ioError: 2
        case .invalidFile: 3
        case .weightError: 4
        case .unsupportedModel: 5
        case .inputShape: 6
        case .outOfMemory: 7
        case .unknownLayer: 8
        case .bufferSize: 9
        }
    }

    public var message: String {
        switch self {
        case .invalidArgument(let m), .ioError(let m), .invalidFile(let m), .weightError(let m),
             .unsupportedModel(let m), .inputShape(let m), .outOfMemory(let m),
             .unknownLayer(let m), .bufferSize(let m):
            m
        }
    }

    public var description: String { message }
}
