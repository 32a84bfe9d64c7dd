// FullGradient: FullGrad (Srinivas & Fleuret 2019) as pytorch-grad-cam 1.5.7 computes it, from
// one backward pass down to the input. Per gradient row (image n, score k) its terms are, in
// module order:
//   - for each input channel: |d(score)/d(input) * input|, min-max normalised (one term each);
//   - for each layer with a bias (every batch norm of a ResNet): |bias_c * d(score)/d(output_c)|,
//     each channel min-max normalised on its own, resized to the output size (bilinear,
//     half-pixel, as cv2.resize INTER_LINEAR) and summed over channels (one term per layer).
// The reference resizes each normalised channel, then sums; the resize is linear, so here the
// channels are summed at the layer's resolution and resized once (the float rounding differs by
// ~1e-7). The heatmap is the min-max normalisation of the sum of all terms (left to the caller:
// `fullGradient` returns the terms or their plain sum). Min-max is (x - min) / (1e-7 + max(x - min)).

extension Trace {
    /// FullGrad terms of K scores per image, before the final min-max normalisation.
    /// The trace must have been created with `Trace.inputLayer` among its layers.
    /// - Parameters:
    ///   - seeds: (N, K, classes), d(score)/d(logits).
    ///   - sumTerms: return the sum over terms instead of each term.
    /// - Returns: (N, K, T, outputHeight, outputWidth) with T = input channels +
    ///   `network.biasLayers.count` (input channels first, then the biased layers in module order),
    ///   or (N, K, outputHeight, outputWidth) when `sumTerms` is true.
    public func fullGradient(seeds: UnsafePointer<Float>, seedsPerImage: Int, outputHeight: Int, outputWidth: Int,
                             sumTerms: Bool) throws(SwiftCAMError) -> FloatBuffer {
        guard let inputPosition = requestedLayers.firstIndex(of: Self.inputLayer) else {
            throw .invalidArgument("FullGrad needs the gradient down to the input: create the trace with the input layer (SWIFTCAM_LAYER_INPUT, -1) among its layers")
        }
        guard seedsPerImage >= 1 else { throw .invalidArgument("seeds per image must be at least 1, got \(seedsPerImage)") }
        guard (1...(1 << 15)).contains(outputHeight), (1...(1 << 15)).contains(outputWidth) else {
            throw .invalidArgument("the heatmap size must be between 1 and 32768, got \(outputHeight)x\(outputWidth)")
        }
        let biases = network.biasLayers
        let layout = FullGradientLayout(rows: inputShape.batch * seedsPerImage, inputTerms: inputShape.channels,
                                        biasTerms: biases.count, height: outputHeight, width: outputWidth, sumTerms: sumTerms)
        let output = try FloatBuffer(count: try layout.count())  // see FullGradientLayout
        output.fill(with: 0)
        let accumulator = try BiasTermAccumulator(output: output, layout: layout)
        let gradients = try backward(seeds: seeds, seedsPerImage: seedsPerImage, biasGradients: accumulator)
        guard accumulator.received == biases.count else {
            throw .invalidArgument("FullGrad: \(accumulator.received) of \(biases.count) bias layers reported a gradient")
        }
        // |input gradient * input|, one term per input channel.
        let inputGradient = gradients[inputPosition]  // (N*K, C, H, W)
        let input = try activation(at: inputPosition)  // (N, C, H, W)
        let plane = inputShape.planeCount
        let scratch = try FloatBuffer(count: plane)  // (H, W)
        for image in 0..<inputShape.batch {
            for seed in 0..<seedsPerImage {
                let row = image * seedsPerImage + seed
                for c in 0..<inputShape.channels {
                    let g = inputGradient.pointer + (row * inputShape.channels + c) * plane
                    let x = input.pointer + (image * inputShape.channels + c) * plane
                    for p in 0..<plane { scratch.pointer[p] = abs(g[p] * x[p]) }
                    CAMPostProcessing.minMaxNormalize(scratch.pointer, count: plane)
                    accumulator.deposit(scratch.pointer, height: inputShape.height, width: inputShape.width, row: row, term: c)
                }
            }
        }
        return output
    }
}

/// Where FullGrad terms go: (rows, T, H, W), or (rows, H, W) summed.
struct FullGradientLayout {
    var rows: Int
    var inputTerms: Int
    var biasTerms: Int
    var height: Int
    var width: Int
    var sumTerms: Bool

    var plane: Int { height * width }
    var terms: Int { inputTerms + biasTerms }

    /// Element count of the output, or `outOfMemory` on overflow.
    func count() throws(SwiftCAMError) -> Int {
        let (perRow, overflow1) = plane.multipliedReportingOverflow(by: sumTerms ? 1 : terms)
        let (total, overflow2) = perRow.multipliedReportingOverflow(by: rows)
        guard !overflow1, !overflow2 else { throw .outOfMemory("the FullGrad output (\(rows) x \(terms) x \(height) x \(width)) is too large") }
        return total
    }
}

/// Turns each biased layer's output gradient into its FullGrad term, written into the output.
/// Layers arrive in reverse module order (see BiasGradients.swift); the i-th arrival is bias
/// term `biasTerms - 1 - i`. Used by one backward pass on one thread.
final class BiasTermAccumulator: BiasGradientSink, @unchecked Sendable {
    private let output: FloatBuffer  // (rows, T, H, W) or (rows, H, W)
    private let layout: FullGradientLayout
    private let resized: FloatBuffer  // (H, W), for the summed layout
    private(set) var received = 0

    init(output: FloatBuffer, layout: FullGradientLayout) throws(SwiftCAMError) {
        self.output = output
        self.layout = layout
        self.resized = try FloatBuffer(count: layout.plane)
    }

    func receive(gradient: FloatBuffer, shape: ActivationShape, bias: FloatBuffer) throws(SwiftCAMError) {
        guard shape.batch == layout.rows, shape.channels == bias.count, gradient.count == shape.count,
              received < layout.biasTerms else {
            throw .invalidArgument("FullGrad: unexpected bias-layer gradient \(shape) for \(bias.count) biases")
        }
        let term = layout.inputTerms + layout.biasTerms - 1 - received
        received += 1
        let plane = shape.planeCount
        let channelMap = try FloatBuffer(count: plane)  // (h, w): one channel's |bias * gradient|
        let layerMap = try FloatBuffer(count: plane)    // (h, w): sum of the normalised channels
        for row in 0..<shape.batch {
            layerMap.fill(with: 0)
            for c in 0..<shape.channels {
                let g = gradient.pointer + (row * shape.channels + c) * plane
                let b = bias.pointer[c]
                for p in 0..<plane { channelMap.pointer[p] = abs(b * g[p]) }
                CAMPostProcessing.minMaxNormalize(channelMap.pointer, count: plane)
                for p in 0..<plane { layerMap.pointer[p] += channelMap.pointer[p] }
            }
            deposit(layerMap.pointer, height: shape.height, width: shape.width, row: row, term: term)
        }
    }

    /// Resizes one term's map (height, width) of gradient row `row` to the output size and
    /// stores it (per-term layout) or adds it to the row's sum.
    func deposit(_ map: UnsafePointer<Float>, height: Int, width: Int, row: Int, term: Int) {
        let plane = layout.plane
        let sameSize = height == layout.height && width == layout.width
        if !layout.sumTerms {
            let destination = output.pointer + (row * layout.terms + term) * plane
            if sameSize {
                destination.update(from: map, count: plane)
            } else {
                bilinearResizeHalfPixel(output: destination, input: map, planes: 1, inputHeight: height, inputWidth: width,
                                        outputHeight: layout.height, outputWidth: layout.width)
            }
            return
        }
        var source = map
        if !sameSize {
            bilinearResizeHalfPixel(output: resized.pointer, input: map, planes: 1, inputHeight: height, inputWidth: width,
                                    outputHeight: layout.height, outputWidth: layout.width)
            source = UnsafePointer(resized.pointer)
        }
        let destination = output.pointer + row * plane
        for p in 0..<plane { destination[p] += source[p] }
    }
}
