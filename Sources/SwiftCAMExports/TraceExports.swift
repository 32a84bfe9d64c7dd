// TraceExports: the swiftcam_trace_* functions of the C ABI (forward pass kept for backward
// passes, gradients, CAMs). Thin thunks over SwiftCAM.Trace and CAMComputer.

import CSwiftCAM
import SwiftCAM

@c @implementation
public func swiftcam_trace_create(_ model: OpaquePointer?, _ input: UnsafePointer<Float>?, _ inputShape: UnsafePointer<Int64>?,
                                  _ layers: UnsafePointer<Int64>?, _ layerCount: Int64, _ trace: UnsafeMutablePointer<OpaquePointer?>?,
                                  _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let handle = try ModelHandle.from(model)
        let shape = try readInputShape(inputShape)
        let input = try requireNonNull(input, "input")
        guard let trace else { throw .invalidArgument("the trace output pointer is NULL") }
        guard layerCount >= 1, layerCount <= 4096 else { throw .invalidArgument("layer_count must be at least 1, got \(layerCount)") }
        let layers = try requireNonNull(layers, "layers")
        let indices = (0..<Int(layerCount)).map { Int(clamping: layers[$0]) }
        handle.recordInput(input)
        let created = try Trace(network: handle.network, input: input, shape: shape, layers: indices)
        trace.pointee = TraceHandle(trace: created).opaque
    }
}

@c @implementation
public func swiftcam_trace_free(_ trace: OpaquePointer?) {
    releaseHandle(trace, as: TraceHandle.self)
}

@c @implementation
public func swiftcam_trace_logits(_ trace: OpaquePointer?, _ logits: UnsafeMutablePointer<Float>?, _ count: Int64,
                                  _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let trace = try TraceHandle.from(trace).trace
        let output = try checkBuffer(logits, count: count, expected: trace.logits.count, name: "logits")
        output.update(from: trace.logits.pointer, count: trace.logits.count)
    }
}

@c @implementation
public func swiftcam_trace_activation(_ trace: OpaquePointer?, _ position: Int64, _ activation: UnsafeMutablePointer<Float>?,
                                      _ count: Int64, _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let trace = try TraceHandle.from(trace).trace
        let values = try trace.activation(at: Int(clamping: position))
        let output = try checkBuffer(activation, count: count, expected: values.count, name: "activation")
        output.update(from: values.pointer, count: values.count)
    }
}

/// Checks a caller's list of per-layer output buffers against the expected element counts.
private func checkBufferList(_ buffers: UnsafePointer<UnsafeMutablePointer<Float>?>?, counts: UnsafePointer<Int64>?,
                             expected: [Int], name: String) throws(SwiftCAMError) -> [UnsafeMutablePointer<Float>] {
    let buffers = try requireNonNull(buffers, name)
    let counts = try requireNonNull(counts, "\(name) counts")
    return try expected.indices.map { (index) throws(SwiftCAMError) -> UnsafeMutablePointer<Float> in
        try checkBuffer(buffers[index], count: counts[index], expected: expected[index], name: "\(name)[\(index)]")
    }
}

/// Checks K and the seeds pointer of a backward or CAM call.
private func checkSeeds(_ seeds: UnsafePointer<Float>?, seedsPerImage: Int64, required: Bool) throws(SwiftCAMError) -> UnsafePointer<Float>? {
    guard seedsPerImage >= 1, seedsPerImage <= 1 << 20 else {
        throw .invalidArgument("seeds_per_image must be at least 1, got \(seedsPerImage)")
    }
    if required { return try requireNonNull(seeds, "seeds") }
    return seeds
}

/// The shared body of the standard and guided backward exports.
private func backward(_ trace: OpaquePointer?, _ seeds: UnsafePointer<Float>?, _ seedsPerImage: Int64,
                      _ gradients: UnsafePointer<UnsafeMutablePointer<Float>?>?, _ gradientCounts: UnsafePointer<Int64>?,
                      rule: ReLUBackwardRule, _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let trace = try TraceHandle.from(trace).trace
        let seeds = try checkSeeds(seeds, seedsPerImage: seedsPerImage, required: true)!
        let k = Int(seedsPerImage)
        let expected = try trace.requestedLayers.indices.map { (position) throws(SwiftCAMError) -> Int in
            try trace.activationShape(at: position).count * k
        }
        let outputs = try checkBufferList(gradients, counts: gradientCounts, expected: expected, name: "gradients")
        let results = try trace.backward(seeds: seeds, seedsPerImage: k, reluRule: rule)
        for (output, result) in zip(outputs, results) { output.update(from: result.pointer, count: result.count) }
    }
}

@c @implementation
public func swiftcam_trace_backward(_ trace: OpaquePointer?, _ seeds: UnsafePointer<Float>?, _ seedsPerImage: Int64,
                                    _ gradients: UnsafePointer<UnsafeMutablePointer<Float>?>?, _ gradientCounts: UnsafePointer<Int64>?,
                                    _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    backward(trace, seeds, seedsPerImage, gradients, gradientCounts, rule: .standard, message, capacity)
}

@c @implementation
public func swiftcam_trace_guided_backward(_ trace: OpaquePointer?, _ seeds: UnsafePointer<Float>?, _ seedsPerImage: Int64,
                                           _ gradients: UnsafePointer<UnsafeMutablePointer<Float>?>?, _ gradientCounts: UnsafePointer<Int64>?,
                                           _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    backward(trace, seeds, seedsPerImage, gradients, gradientCounts, rule: .guided, message, capacity)
}

@c @implementation
public func swiftcam_trace_cam(_ trace: OpaquePointer?, _ options: UnsafePointer<swiftcam_cam_options>?, _ seeds: UnsafePointer<Float>?,
                               _ seedsPerImage: Int64, _ heatmaps: UnsafeMutablePointer<Float>?, _ heatmapsCount: Int64,
                               _ rawMaps: UnsafePointer<UnsafeMutablePointer<Float>?>?, _ rawCounts: UnsafePointer<Int64>?,
                               _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let trace = try TraceHandle.from(trace).trace
        let raw = try requireNonNull(options, "options").pointee
        guard let method = CAMMethod(rawValue: raw.method) else { throw .invalidArgument("unknown CAM method \(raw.method)") }
        let seeds = try checkSeeds(seeds, seedsPerImage: seedsPerImage, required: method.usesGradients)
        let k = Int(seedsPerImage)
        let height = Int(clamping: raw.output_height)
        let width = Int(clamping: raw.output_width)
        let rows = trace.inputShape.batch * k
        let (plane, overflow) = height.multipliedReportingOverflow(by: width)
        guard !overflow, height >= 1, width >= 1 else { throw .invalidArgument("invalid heatmap size \(height)x\(width)") }
        let output = try checkBuffer(heatmaps, count: heatmapsCount, expected: rows * plane, name: "heatmaps")
        var rawOutputs: [UnsafeMutablePointer<Float>]? = nil
        if rawMaps != nil {
            let expected = try trace.requestedLayers.indices.map { (position) throws(SwiftCAMError) -> Int in
                try trace.activationShape(at: position).planeCount * rows
            }
            rawOutputs = try checkBufferList(rawMaps, counts: rawCounts, expected: expected, name: "raw_maps")
        }
        let options = CAMOptions(method: method, eigenSmooth: raw.eigen_smooth != 0, outputHeight: height, outputWidth: width)
        let result = try CAMComputer.compute(trace: trace, options: options, seeds: seeds, seedsPerImage: k)
        output.update(from: result.heatmaps.pointer, count: result.heatmaps.count)
        if let rawOutputs {
            for (destination, map) in zip(rawOutputs, result.rawMaps) { destination.update(from: map.pointer, count: map.count) }
        }
    }
}

@c @implementation
public func swiftcam_trace_fullgrad(_ trace: OpaquePointer?, _ seeds: UnsafePointer<Float>?, _ seedsPerImage: Int64,
                                    _ sumTerms: Int32, _ outputHeight: Int64, _ outputWidth: Int64,
                                    _ maps: UnsafeMutablePointer<Float>?, _ mapsCount: Int64,
                                    _ message: UnsafeMutablePointer<CChar>?, _ capacity: Int64) -> Int32 {
    withStatus(message, capacity) { () throws(SwiftCAMError) in
        let trace = try TraceHandle.from(trace).trace
        let seeds = try checkSeeds(seeds, seedsPerImage: seedsPerImage, required: true)!
        guard outputHeight >= 1, outputWidth >= 1, outputHeight <= 1 << 15, outputWidth <= 1 << 15 else {
            throw .invalidArgument("the heatmap size must be between 1 and 32768, got \(outputHeight)x\(outputWidth)")
        }
        guard trace.requestedLayers.contains(Trace.inputLayer) else {
            throw .invalidArgument("FullGrad needs the gradient down to the input: create the trace with SWIFTCAM_LAYER_INPUT among its layers")
        }
        let k = Int(seedsPerImage)
        let height = Int(outputHeight), width = Int(outputWidth)
        let terms = sumTerms != 0 ? 1 : trace.inputShape.channels + trace.network.biasLayers.count
        let (perRow, overflow1) = (height * width).multipliedReportingOverflow(by: terms)
        let (expected, overflow2) = perRow.multipliedReportingOverflow(by: trace.inputShape.batch * k)
        guard !overflow1, !overflow2 else { throw .outOfMemory("the FullGrad output is too large") }
        let output = try checkBuffer(maps, count: mapsCount, expected: expected, name: "maps")
        let result = try trace.fullGradient(seeds: seeds, seedsPerImage: k, outputHeight: height, outputWidth: width,
                                            sumTerms: sumTerms != 0)
        output.update(from: result.pointer, count: result.count)
    }
}
