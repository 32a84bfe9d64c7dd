// ModelExports: the swiftcam_model_* and runtime functions of the C ABI. Thin thunks: pointers
// become Swift views, Swift errors become status codes and messages. Checked against swiftcam.h.

import CSwiftCAM
import COpenBLAS
import SwiftCAM
import Synchronization

private let statusNames: [StaticString] = [
    "ok", "invalid argument", "I/O error", "invalid file", "weight error", "unsupported model",
    "input shape error", "out of memory", "unknown layer", "buffer size mismatch",
]
private let unknownStatusName: StaticString = "unknown status"

@c @implementation
public func swiftcam_status_string(_ status: Int32) -> UnsafePointer<CChar>? {
    let name = statusNames.indices.contains(Int(status)) ? statusNames[Int(status)] : unknownStatusName
    return UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self)
}

@c @implementation
public func swiftcam_model_load_file(_ path: UnsafePointer<CChar>?, _ model: UnsafeMutablePointer<OpaquePointer?>?,
                                     _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let path = try requireNonNull(path, "path")
        guard let model else { throw .invalidArgument("the model output pointer is NULL") }
        let file = try SafeTensorsFile(path: String(cString: path))
        model.pointee = ModelHandle(network: try ResNetBuilder.build(from: file)).opaque
    }
}

/// Views of a caller's tensor list, checked (names, ranks, shapes, data pointers).
private func borrowedWeights(_ tensors: UnsafePointer<swiftcam_tensor_view>?, _ count: Int64) throws(SwiftCAMError) -> BorrowedWeights {
    guard count >= 0 else { throw .invalidArgument("negative tensor count \(count)") }
    guard count == 0 || tensors != nil else { throw .invalidArgument("tensors is NULL") }
    var list: [BorrowedWeights.Tensor] = []
    for index in 0..<Int(count) {
        let view = tensors![index]
        guard let name = view.name else { throw .invalidArgument("tensor \(index) has a NULL name") }
        let key = String(cString: name)
        guard view.rank >= 0, view.rank <= 8 else { throw .weightError("tensor '\(key)' has rank \(view.rank)") }
        guard view.rank == 0 || view.shape != nil else { throw .invalidArgument("tensor '\(key)' has a NULL shape") }
        let shape = (0..<Int(view.rank)).map { Int(view.shape![$0]) }
        var elements = 1
        for dimension in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
            guard dimension >= 0, !overflow else { throw .weightError("tensor '\(key)' has an invalid shape \(shape)") }
            elements = product
        }
        guard elements == 0 || view.data != nil else { throw .invalidArgument("tensor '\(key)' has NULL data") }
        list.append(BorrowedWeights.Tensor(name: key, shape: shape, values: UnsafeBufferPointer(start: view.data, count: elements)))
    }
    return try BorrowedWeights(list)
}

@c @implementation
public func swiftcam_model_load_tensors(_ tensors: UnsafePointer<swiftcam_tensor_view>?, _ count: Int64,
                                        _ model: UnsafeMutablePointer<OpaquePointer?>?,
                                        _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        guard let model else { throw .invalidArgument("the model output pointer is NULL") }
        model.pointee = ModelHandle(network: try ResNetBuilder.build(from: try borrowedWeights(tensors, count))).opaque
    }
}

@c @implementation
public func swiftcam_model_update_tensors(_ model: OpaquePointer?, _ tensors: UnsafePointer<swiftcam_tensor_view>?, _ count: Int64,
                                          _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let handle = try ModelHandle.from(model)
        try handle.replaceNetwork(with: try ResNetBuilder.build(from: try borrowedWeights(tensors, count)))
    }
}

@c @implementation
public func swiftcam_model_free(_ model: OpaquePointer?) {
    releaseHandle(model, as: ModelHandle.self)
}

@c @implementation
public func swiftcam_model_architecture(_ model: OpaquePointer?) -> UnsafePointer<CChar>? {
    (try? ModelHandle.from(model)).map { UnsafePointer($0.architecture) }
}

@c @implementation
public func swiftcam_model_description(_ model: OpaquePointer?) -> UnsafePointer<CChar>? {
    (try? ModelHandle.from(model)).map { UnsafePointer($0.description) }
}

@c @implementation
public func swiftcam_model_num_classes(_ model: OpaquePointer?) -> Int64 {
    (try? ModelHandle.from(model)).map { Int64($0.network.numClasses) } ?? -1
}

@c @implementation
public func swiftcam_model_input_channels(_ model: OpaquePointer?) -> Int64 {
    (try? ModelHandle.from(model)).map { Int64($0.network.inputChannels) } ?? -1
}

@c @implementation
public func swiftcam_model_layer_count(_ model: OpaquePointer?) -> Int64 {
    (try? ModelHandle.from(model)).map { Int64($0.layerNames.count) } ?? -1
}

@c @implementation
public func swiftcam_model_layer_name(_ model: OpaquePointer?, _ index: Int64) -> UnsafePointer<CChar>? {
    guard let handle = try? ModelHandle.from(model), index >= 0, index < Int64(handle.layerNames.count) else { return nil }
    return UnsafePointer(handle.layerNames[Int(index)])
}

@c @implementation
public func swiftcam_model_layer_shape(_ model: OpaquePointer?, _ layer: Int64, _ inputShape: UnsafePointer<Int64>?,
                                       _ outputShape: UnsafeMutablePointer<Int64>?,
                                       _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let network = try ModelHandle.from(model).network
        guard let outputShape else { throw .invalidArgument("output_shape is NULL") }
        let shape = try network.layerShape(Int(clamping: layer), for: try readInputShape(inputShape))
        for (index, dimension) in shape.dimensions.enumerated() { outputShape[index] = Int64(dimension) }
    }
}

@c @implementation
public func swiftcam_model_forward(_ model: OpaquePointer?, _ input: UnsafePointer<Float>?, _ inputShape: UnsafePointer<Int64>?,
                                   _ logits: UnsafeMutablePointer<Float>?, _ logitsCount: Int64,
                                   _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let handle = try ModelHandle.from(model)
        let network = handle.network
        let shape = try readInputShape(inputShape)
        let input = try requireNonNull(input, "input")
        let output = try checkBuffer(logits, count: logitsCount, expected: shape.batch * network.numClasses, name: "logits")
        handle.recordInput(input)
        let result = try network.forward(input, shape: shape)
        output.update(from: result.pointer, count: result.count)
    }
}

@c @implementation
public func swiftcam_model_forward_from(_ model: OpaquePointer?, _ layer: Int64, _ activation: UnsafePointer<Float>?,
                                        _ activationShape: UnsafePointer<Int64>?, _ logits: UnsafeMutablePointer<Float>?,
                                        _ logitsCount: Int64, _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let network = try ModelHandle.from(model).network
        let shape = try readInputShape(activationShape)
        let activation = try requireNonNull(activation, "activation")
        let output = try checkBuffer(logits, count: logitsCount, expected: shape.batch * network.numClasses, name: "logits")
        let result = try network.forward(fromLayer: Int(clamping: layer), activation: activation, shape: shape)
        output.update(from: result.pointer, count: result.count)
    }
}

@c @implementation
public func swiftcam_model_last_input_address(_ model: OpaquePointer?) -> Int64 {
    (try? ModelHandle.from(model)).map { Int64($0.lastInputAddress.load(ordering: .relaxed)) } ?? 0
}

@c @implementation
public func swiftcam_set_num_threads(_ n: Int64) -> Int32 {
    guard n >= 1, n <= Int64(ComputeThreads.maximum) else { return SwiftCAMError.invalidArgument("").statusCode }
    ComputeThreads.set(Int(n))
    return 0
}

@c @implementation
public func swiftcam_get_num_threads() -> Int64 {
    Int64(ComputeThreads.count)
}

@c @implementation
public func swiftcam_blas_core_name() -> UnsafePointer<CChar>? {
    UnsafePointer(openblas_get_corename())
}

@c @implementation
public func swiftcam_gemm_kernel_name() -> UnsafePointer<CChar>? {
    GemmKernel.name
}

@c @implementation
public func swiftcam_model_bias_layer_count(_ model: OpaquePointer?) -> Int64 {
    (try? ModelHandle.from(model)).map { Int64($0.network.biasLayers.count) } ?? -1
}
