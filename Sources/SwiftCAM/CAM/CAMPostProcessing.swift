// CAMPostProcessing: what pytorch-grad-cam does to raw maps (scale_cam_image and
// aggregate_multi_layers): ReLU, per-map min-max normalisation with its 1e-7 eps, bilinear
// resize (half-pixel centres, as OpenCV INTER_LINEAR), and across layers ReLU, mean and a second
// min-max. All in Float32, as the reference computes in NumPy float32.

enum CAMPostProcessing {
    /// In place: x = max(x, 0) over `count` floats.
    static func relu(_ values: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { values[i] = max(values[i], 0) }
    }

    /// In place: x = (x - min) / (1e-7 + max(x - min)), as scale_cam_image.
    static func minMaxNormalize(_ values: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        var low = values[0]
        for i in 1..<count { low = min(low, values[i]) }
        var high = -Float.infinity
        for i in 0..<count {
            values[i] -= low
            high = max(high, values[i])
        }
        let denominator: Float = 1e-7 + high
        for i in 0..<count { values[i] /= denominator }
    }

    /// One layer's contribution: ReLU, min-max, resize. `map` (h, w) is modified in place;
    /// `output` (H, W) receives the result.
    static func scaledLayerMap(_ map: UnsafeMutablePointer<Float>, height: Int, width: Int,
                               into output: UnsafeMutablePointer<Float>, outputHeight: Int, outputWidth: Int) {
        relu(map, count: height * width)
        minMaxNormalize(map, count: height * width)
        bilinearResizeHalfPixel(output: output, input: map, planes: 1, inputHeight: height, inputWidth: width,
                                outputHeight: outputHeight, outputWidth: outputWidth)
    }

    /// heatmaps (rows, H, W) = min-max(mean over layers of ReLU(perLayer (rows, L, H, W))).
    static func aggregateLayers(_ perLayer: FloatBuffer, layerCount: Int, rows: Int, plane: Int, into heatmaps: FloatBuffer) {
        for row in 0..<rows {
            let out = heatmaps.pointer + row * plane
            out.update(repeating: 0, count: plane)
            for layer in 0..<layerCount {
                let source = perLayer.pointer + (row * layerCount + layer) * plane
                for p in 0..<plane { out[p] += max(source[p], 0) }
            }
            for p in 0..<plane { out[p] /= Float(layerCount) }
            CAMPostProcessing.minMaxNormalize(out, count: plane)
        }
    }
}
