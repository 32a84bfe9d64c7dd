// Handles: the Swift objects behind the C ABI's opaque pointers (swiftcam_model, swiftcam_trace),
// and the conversions between them. Handles are retained when created and released when freed.

import Synchronization
import SwiftCAM

#if canImport(Glibc)
import Glibc
#endif

/// What a swiftcam_model* points to: a network plus the C strings the ABI hands out.
final class ModelHandle {
    /// The current network; `replaceNetwork` swaps it while calls already running keep theirs.
    private let current: Mutex<Network>
    let architecture: UnsafeMutablePointer<CChar>
    let description: UnsafeMutablePointer<CChar>
    let layerNames: [UnsafeMutablePointer<CChar>]
    /// The last input address read, for zero-copy tests.
    let lastInputAddress = Atomic<Int>(0)

    init(network: Network) {
        self.current = Mutex(network)
        self.architecture = strdup(network.architecture)
        self.description = strdup(network.configurationJSON)
        self.layerNames = network.layers.map { strdup($0.name) }
    }

    deinit {
        free(architecture)
        free(description)
        layerNames.forEach { free($0) }
    }

    /// The network calls should use; read it once per call.
    var network: Network { current.withLock { $0 } }

    /// Swaps in new weights for the same architecture (same layers, classes and input channels),
    /// so the names and sizes handed out through the ABI stay true.
    func replaceNetwork(with replacement: Network) throws(SwiftCAMError) {
        let old = network
        guard replacement.configurationJSON == old.configurationJSON,
              replacement.layers.map(\.name) == old.layers.map(\.name) else {
            throw .weightError("the new weights describe another architecture (\(replacement.configurationJSON)) than the model's (\(old.configurationJSON)); load them as a new model instead")
        }
        current.withLock { $0 = replacement }
    }

    func recordInput(_ input: UnsafePointer<Float>) {
        lastInputAddress.store(Int(bitPattern: input), ordering: .relaxed)
    }

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passRetained(self).toOpaque()) }

    static func from(_ pointer: OpaquePointer?) throws(SwiftCAMError) -> ModelHandle {
        guard let pointer else { throw .invalidArgument("the model handle is NULL") }
        return Unmanaged<ModelHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}

/// What a swiftcam_trace* points to.
final class TraceHandle {
    let trace: Trace

    init(trace: Trace) { self.trace = trace }

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passRetained(self).toOpaque()) }

    static func from(_ pointer: OpaquePointer?) throws(SwiftCAMError) -> TraceHandle {
        guard let pointer else { throw .invalidArgument("the trace handle is NULL") }
        return Unmanaged<TraceHandle>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}

/// Releases a handle created by `opaque`.
func releaseHandle<T: AnyObject>(_ pointer: OpaquePointer?, as type: T.Type) {
    guard let pointer else { return }
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(pointer)).release()
}
