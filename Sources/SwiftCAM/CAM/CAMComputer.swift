// CAMComputer: class activation maps from a Trace: one backward pass for K scores per image,
// then the method's per-layer maps, then the reference's post-processing and multi-layer
// aggregation.

/// Options of a CAM computation.
public struct CAMOptions: Sendable {
    public var method: CAMMethod
    public var eigenSmooth: Bool
    public var outputHeight: Int
    public var outputWidth: Int

    public init(method: CAMMethod, eigenSmooth: Bool = false, outputHeight: Int, outputWidth: Int) {
        self.method = method
        self.eigenSmooth = eigenSmooth
        self.outputHeight = outputHeight
        self.outputWidth = outputWidth
    }
}

/// Heatmaps and the per-layer raw maps behind them.
public struct CAMResult {
    /// (N, K, H, W), each map in [0, 1].
    public let heatmaps: FloatBuffer
    /// One (N, K, h_i, w_i) map per requested layer, before ReLU and normalisation.
    public let rawMaps: [FloatBuffer]
}

public enum CAMComputer {
    /// Computes CAMs for K scores per image. `seeds` (N, K, classes) may be nil for EigenCAM.
    public static func compute(trace: Trace, options: CAMOptions, seeds: UnsafePointer<Float>?,
                               seedsPerImage: Int) throws(SwiftCAMError) -> CAMResult {
        guard seedsPerImage >= 1 else { throw .invalidArgument("seeds per image must be at least 1, got \(seedsPerImage)") }
        guard options.outputHeight >= 1, options.outputWidth >= 1, options.outputHeight <= 1 << 15, options.outputWidth <= 1 << 15 else {
            throw .invalidArgument("the heatmap size must be between 1 and 32768, got \(options.outputHeight)x\(options.outputWidth)")
        }
        var gradients: [FloatBuffer]? = nil
        if options.method.usesGradients {
            guard let seeds else { throw .invalidArgument("\(options.method) needs gradient seeds (targets)") }
            gradients = try trace.backward(seeds: seeds, seedsPerImage: seedsPerImage)
        }
        let images = trace.inputShape.batch
        let rows = images * seedsPerImage
        let outputPlane = options.outputHeight * options.outputWidth
        let layerCount = trace.requestedLayers.count
        // (N*K, L, H, W): each layer's scaled map, then aggregated.
        let perLayer = try FloatBuffer(count: rows * layerCount * outputPlane)
        var rawMaps: [FloatBuffer] = []
        for position in 0..<layerCount {
            let shape = try trace.activationShape(at: position)
            let activations = try trace.activation(at: position)
            let raw = try FloatBuffer(count: rows * shape.planeCount)
            let weighted = try FloatBuffer(count: shape.imageCount)  // (C, h, w)
            let scratch = try FloatBuffer(count: shape.planeCount)   // (h, w)
            for image in 0..<images {
                for seed in 0..<seedsPerImage {
                    let row = image * seedsPerImage + seed
                    options.method.weightedActivations(
                        into: weighted.pointer, activations: activations.pointer + image * shape.imageCount,
                        gradients: gradients.map { UnsafePointer($0[position].pointer + row * shape.imageCount) },
                        channels: shape.channels, plane: shape.planeCount)
                    let map = raw.pointer + row * shape.planeCount
                    if options.eigenSmooth || options.method.alwaysProjects {
                        try PrincipalProjection.project(weighted.pointer, channels: shape.channels, plane: shape.planeCount, into: map)
                    } else {
                        channelSum(weighted.pointer, channels: shape.channels, plane: shape.planeCount, into: map)
                    }
                    scratch.pointer.update(from: map, count: shape.planeCount)
                    CAMPostProcessing.scaledLayerMap(scratch.pointer, height: shape.height, width: shape.width,
                                                     into: perLayer.pointer + (row * layerCount + position) * outputPlane,
                                                     outputHeight: options.outputHeight, outputWidth: options.outputWidth)
                }
            }
            rawMaps.append(raw)
        }
        let heatmaps = try FloatBuffer(count: rows * outputPlane)
        CAMPostProcessing.aggregateLayers(perLayer, layerCount: layerCount, rows: rows, plane: outputPlane, into: heatmaps)
        return CAMResult(heatmaps: heatmaps, rawMaps: rawMaps)
    }

    /// map (h, w) = sum over channels of tensor (C, h, w), summed in channel order as NumPy does.
    private static func channelSum(_ tensor: UnsafePointer<Float>, channels: Int, plane: Int, into map: UnsafeMutablePointer<Float>) {
        map.update(repeating: 0, count: plane)
        for c in 0..<channels {
            let row = tensor + c * plane
            for p in 0..<plane { map[p] += row[p] }
        }
    }
}
