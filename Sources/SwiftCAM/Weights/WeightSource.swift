// WeightSource: where a model's named tensors come from (a safetensors file, or arrays handed
// over by the caller), and WeightReader, which hands them to a network builder while checking
// shapes and recording which names were used, so missing and unexpected tensors are reported.

/// A set of named tensors in torchvision's state-dict naming.
public protocol WeightSource {
    /// Every tensor name, in the source's order.
    var names: [String] { get }
    func shape(of name: String) -> [Int]?
    /// The tensor's values as Float32.
    func floats(of name: String) throws(SwiftCAMError) -> [Float]
    /// Calls `body` with the tensor's Float32 values, in place when the source stores them as
    /// aligned Float32 (no copy), else from a converted copy.
    func withFloats<R>(of name: String, _ body: (UnsafeBufferPointer<Float>) throws(SwiftCAMError) -> R) throws(SwiftCAMError) -> R
}

extension WeightSource {
    public func withFloats<R>(of name: String, _ body: (UnsafeBufferPointer<Float>) throws(SwiftCAMError) -> R) throws(SwiftCAMError) -> R {
        let values = try floats(of: name)
        var result: Result<R, SwiftCAMError> = .failure(.invalidArgument("unreachable"))
        values.withUnsafeBufferPointer { buffer in
            do throws(SwiftCAMError) { result = .success(try body(buffer)) } catch { result = .failure(error) }
        }
        return try result.get()
    }
}

extension SafeTensorsFile: WeightSource {
    public var names: [String] { entries.map(\.name) }
    public func shape(of name: String) -> [Int]? { entry(named: name)?.shape }
    public func floats(of name: String) throws(SwiftCAMError) -> [Float] {
        guard let entry = entry(named: name) else { throw .weightError("missing tensor '\(name)'") }
        return try floats(of: entry)
    }
    public func withFloats<R>(of name: String, _ body: (UnsafeBufferPointer<Float>) throws(SwiftCAMError) -> R) throws(SwiftCAMError) -> R {
        guard let entry = entry(named: name) else { throw .weightError("missing tensor '\(name)'") }
        let raw = bytes(of: entry)
        guard entry.dtype == .float32, let base = raw.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 else {
            let values = try floats(of: entry)
            var result: Result<R, SwiftCAMError> = .failure(.invalidArgument("unreachable"))
            values.withUnsafeBufferPointer { buffer in
                do throws(SwiftCAMError) { result = .success(try body(buffer)) } catch { result = .failure(error) }
            }
            return try result.get()
        }
        // The mapping is read-only and lives as long as `self`: read the floats where they are.
        let floats = base.bindMemory(to: Float.self, capacity: raw.count / 4)
        return try body(UnsafeBufferPointer(start: floats, count: raw.count / 4))
    }
}

/// Float32 tensors supplied by the caller (for example NumPy arrays). Values are copied on read.
public struct BorrowedWeights: WeightSource {
    public struct Tensor {
        public let name: String
        public let shape: [Int]
        public let values: UnsafeBufferPointer<Float>
        public init(name: String, shape: [Int], values: UnsafeBufferPointer<Float>) {
            self.name = name
            self.shape = shape
            self.values = values
        }
    }

    private let tensors: [String: Tensor]
    public let names: [String]

    public init(_ list: [Tensor]) throws(SwiftCAMError) {
        var tensors: [String: Tensor] = [:]
        for tensor in list {
            guard tensors[tensor.name] == nil else { throw .weightError("tensor '\(tensor.name)' is given twice") }
            tensors[tensor.name] = tensor
        }
        self.tensors = tensors
        self.names = list.map(\.name)
    }

    public func shape(of name: String) -> [Int]? { tensors[name]?.shape }
    public func floats(of name: String) throws(SwiftCAMError) -> [Float] {
        guard let tensor = tensors[name] else { throw .weightError("missing tensor '\(name)'") }
        return Array(tensor.values)
    }
    public func withFloats<R>(of name: String, _ body: (UnsafeBufferPointer<Float>) throws(SwiftCAMError) -> R) throws(SwiftCAMError) -> R {
        guard let tensor = tensors[name] else { throw .weightError("missing tensor '\(name)'") }
        return try body(tensor.values)
    }
}

/// Reads tensors for a builder: checks shapes, and remembers what was read.
public final class WeightReader {
    private let source: any WeightSource
    private var used = Set<String>()

    public init(_ source: any WeightSource) { self.source = source }

    public func contains(_ name: String) -> Bool { source.shape(of: name) != nil }

    /// The shape of `name`, or a weight error naming the missing tensor.
    public func shape(of name: String) throws(SwiftCAMError) -> [Int] {
        guard let shape = source.shape(of: name) else { throw .weightError("missing tensor '\(name)'") }
        return shape
    }

    /// Reads `name`, which must have exactly `expectedShape`.
    public func read(_ name: String, shape expectedShape: [Int]) throws(SwiftCAMError) -> [Float] {
        let shape = try shape(of: name)
        guard shape == expectedShape else {
            throw .weightError("tensor '\(name)' has shape \(shape), expected \(expectedShape)")
        }
        used.insert(name)
        return try source.floats(of: name)
    }

    /// Like `read`, but lends the values to `body` without copying them when the source allows.
    public func withTensor<R>(_ name: String, shape expectedShape: [Int],
                              _ body: (UnsafeBufferPointer<Float>) throws(SwiftCAMError) -> R) throws(SwiftCAMError) -> R {
        let shape = try shape(of: name)
        guard shape == expectedShape else {
            throw .weightError("tensor '\(name)' has shape \(shape), expected \(expectedShape)")
        }
        used.insert(name)
        return try source.withFloats(of: name, body)
    }

    /// Fails when the source holds tensors no builder step read (batch-norm counters excepted).
    public func checkAllUsed() throws(SwiftCAMError) {
        let unexpected = source.names.filter { !used.contains($0) && !$0.hasSuffix("num_batches_tracked") }
        guard unexpected.isEmpty else {
            let shown = unexpected.prefix(5).map { "'\($0)'" }.joined(separator: ", ")
            let more = unexpected.count > 5 ? " and \(unexpected.count - 5) more" : ""
            throw .weightError("unexpected tensor\(unexpected.count > 1 ? "s" : "") \(shown)\(more): not part of the inferred architecture")
        }
    }
}
