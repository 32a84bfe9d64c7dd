// Pooling: max pooling (torch.nn.MaxPool2d with ceil_mode=False, dilation 1) and adaptive average
// pooling (torch.nn.AdaptiveAvgPool2d) for NCHW Float32 tensors, forward and backward.

/// Size rules of `maxPool2dForward`.
public enum MaxPool2d {
    /// Output spatial size of a max pool as torch computes it (floor mode), nil when the sizes are
    /// not positive, the padding exceeds half the kernel (torch rejects that) or the output is empty.
    public static func outputSize(
        height: Int, width: Int, kernel: Int, stride: Int, padding: Int
    ) -> (height: Int, width: Int)? {
        guard height > 0, width > 0, kernel > 0, stride > 0, padding >= 0, padding <= kernel / 2
        else { return nil }
        let spanHeight = height + 2 * padding - kernel, spanWidth = width + 2 * padding - kernel
        guard spanHeight >= 0, spanWidth >= 0 else { return nil }
        return (spanHeight / stride + 1, spanWidth / stride + 1)
    }
}

/// Computes a square max pool, padding with -infinity, as `torch.nn.MaxPool2d(kernel, stride, padding)`.
///
/// When `indices` is given it receives, per output, the flat index `y * width + x` of the maximum
/// within its input plane. As in torch the first maximum in row-major scan order wins ties and a
/// NaN wins over any number. The sizes must satisfy `MaxPool2d.outputSize` (non-nil).
public func maxPool2dForward(
    output: UnsafeMutablePointer<Float>,  // (N, C, Ho, Wo)
    indices: UnsafeMutablePointer<Int32>?,  // (N, C, Ho, Wo)
    input: UnsafePointer<Float>,  // (N, C, H, W)
    batch: Int, channels: Int, height: Int, width: Int, kernel: Int, stride: Int, padding: Int
) {
    guard let (outputHeight, outputWidth) = MaxPool2d.outputSize(
        height: height, width: width, kernel: kernel, stride: stride, padding: padding)
    else { return }
    let outputPlane = outputHeight * outputWidth
    guard let indices else {
        maxPool2dValues(output: output, input: input, planes: batch * channels, height: height, width: width,
                        outputHeight: outputHeight, outputWidth: outputWidth, kernel: kernel, stride: stride, padding: padding)
        return
    }
    forEachRange(of: batch * channels, costPerItem: height * width) { planes in
        for planeIndex in planes {
            let plane = input + planeIndex * height * width
            let destination = output + planeIndex * outputPlane
            for oy in 0..<outputHeight {
                let top = oy * stride - padding
                let rows = max(top, 0)..<min(top + kernel, height)
                for ox in 0..<outputWidth {
                    let left = ox * stride - padding
                    let cols = max(left, 0)..<min(left + kernel, width)
                    var best = -Float.infinity
                    var bestIndex = rows.lowerBound * width + cols.lowerBound
                    for y in rows {
                        for x in cols {
                            let value = plane[y * width + x]
                            if value > best || value.isNaN {
                                best = value
                                bestIndex = y * width + x
                            }
                        }
                    }
                    destination[oy * outputWidth + ox] = best
                    indices[planeIndex * outputPlane + oy * outputWidth + ox] = Int32(truncatingIfNeeded: bestIndex)
                }
            }
        }
    }
}

/// The larger of two values, NaN winning, as torch's max pool compares.
@inline(__always)
private func nanPropagatingMax(_ value: Float, _ best: Float) -> Float {
    // Two selects rather than `||`, whose branch keeps the loops from being vectorised.
    let larger = value > best ? value : best
    return value.isNaN ? value : larger
}

/// Max pool values only (no argmax), separably: each input row's window maxima, then the maximum
/// over the window's rows. Same result as the indexed pass, without its bookkeeping.
private func maxPool2dValues(
    output: UnsafeMutablePointer<Float>,  // (planes, Ho, Wo)
    input: UnsafePointer<Float>,  // (planes, H, W)
    planes: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int, kernel: Int, stride: Int, padding: Int
) {
    // Output columns whose window lies inside the row (no padding in reach).
    let interior = validOutputRange(offset: -padding, stride: stride, inputSize: width - kernel + 1, outputSize: outputWidth)
    /// The maximum over the part of output column ox's window inside the row, -infinity if none.
    func windowMaximum(_ row: UnsafePointer<Float>, ox: Int) -> Float {
        let left = ox * stride - padding
        var best = -Float.infinity
        for x in max(left, 0)..<min(left + kernel, width) { best = nanPropagatingMax(row[x], best) }
        return best
    }
    forEachRange(of: planes, costPerItem: height * width) { planes in
        let rowMaxima = UnsafeMutablePointer<Float>.allocate(capacity: height * outputWidth)  // (H, Wo)
        defer { rowMaxima.deallocate() }
        for planeIndex in planes {
            let plane = input + planeIndex * height * width
            for y in 0..<height {
                let row = plane + y * width
                let destination = rowMaxima + y * outputWidth
                for ox in 0..<interior.lowerBound { destination[ox] = windowMaximum(row, ox: ox) }
                if kernel == 3 {
                    // ResNet's stem pool: a fixed window the compiler can vectorise.
                    for ox in interior {
                        let window = row + ox * stride - padding
                        destination[ox] = nanPropagatingMax(window[2], nanPropagatingMax(window[1], window[0]))
                    }
                } else {
                    for ox in interior { destination[ox] = windowMaximum(row, ox: ox) }
                }
                for ox in interior.upperBound..<outputWidth { destination[ox] = windowMaximum(row, ox: ox) }
            }
            let out = output + planeIndex * outputHeight * outputWidth
            for oy in 0..<outputHeight {
                let top = oy * stride - padding
                let destination = out + oy * outputWidth
                destination.update(repeating: -Float.infinity, count: outputWidth)
                for y in max(top, 0)..<min(top + kernel, height) {
                    let source = rowMaxima + y * outputWidth
                    for ox in 0..<outputWidth { destination[ox] = nanPropagatingMax(source[ox], destination[ox]) }
                }
            }
        }
    }
}

/// Computes the input gradient of a max pool from the `indices` its forward pass recorded: each
/// output gradient goes to its argmax (summed where windows share one). Overwrites `inputGradient`.
public func maxPool2dBackward(
    inputGradient: UnsafeMutablePointer<Float>,  // (N, C, H, W)
    outputGradient: UnsafePointer<Float>,  // (N, C, Ho, Wo)
    indices: UnsafePointer<Int32>,  // (N, C, Ho, Wo)
    batch: Int, channels: Int, inputHeight: Int, inputWidth: Int, outputHeight: Int, outputWidth: Int
) {
    let inputPlane = inputHeight * inputWidth, outputPlane = outputHeight * outputWidth
    inputGradient.update(repeating: 0, count: batch * channels * inputPlane)
    for planeIndex in 0..<batch * channels {
        let destination = inputGradient + planeIndex * inputPlane
        let gradient = outputGradient + planeIndex * outputPlane
        let argmax = indices + planeIndex * outputPlane
        for i in 0..<outputPlane { destination[Int(argmax[i])] += gradient[i] }
    }
}

/// The input bin `floor(i * inputSize / outputSize) ..< ceil((i + 1) * inputSize / outputSize)`
/// that adaptive pooling averages for output `i`, as in PyTorch.
@inline(__always)
func adaptiveBin(_ i: Int, inputSize: Int, outputSize: Int) -> Range<Int> {
    (i * inputSize / outputSize)..<(((i + 1) * inputSize + outputSize - 1) / outputSize)
}

/// Computes `torch.nn.AdaptiveAvgPool2d((outputHeight, outputWidth))`: each output is the mean of
/// its input bin (see `adaptiveBin`); bins may overlap when the sizes do not divide.
public func adaptiveAvgPool2dForward(
    output: UnsafeMutablePointer<Float>,  // (N, C, Ho, Wo)
    input: UnsafePointer<Float>,  // (N, C, H, W)
    batch: Int, channels: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int
) {
    let inputPlane = height * width, outputPlane = outputHeight * outputWidth
    for planeIndex in 0..<batch * channels {
        let plane = input + planeIndex * inputPlane
        let destination = output + planeIndex * outputPlane
        for oy in 0..<outputHeight {
            let rows = adaptiveBin(oy, inputSize: height, outputSize: outputHeight)
            for ox in 0..<outputWidth {
                let cols = adaptiveBin(ox, inputSize: width, outputSize: outputWidth)
                var sum: Float = 0
                for y in rows {
                    for x in cols { sum += plane[y * width + x] }
                }
                destination[oy * outputWidth + ox] = sum / Float(rows.count * cols.count)
            }
        }
    }
}

/// Computes the input gradient of `adaptiveAvgPool2dForward`: each output gradient is spread evenly
/// over its bin (summed where bins overlap). Overwrites `inputGradient`.
public func adaptiveAvgPool2dBackward(
    inputGradient: UnsafeMutablePointer<Float>,  // (N, C, H, W)
    outputGradient: UnsafePointer<Float>,  // (N, C, Ho, Wo)
    batch: Int, channels: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int
) {
    let inputPlane = height * width, outputPlane = outputHeight * outputWidth
    inputGradient.update(repeating: 0, count: batch * channels * inputPlane)
    for planeIndex in 0..<batch * channels {
        let destination = inputGradient + planeIndex * inputPlane
        let gradient = outputGradient + planeIndex * outputPlane
        for oy in 0..<outputHeight {
            let rows = adaptiveBin(oy, inputSize: height, outputSize: outputHeight)
            for ox in 0..<outputWidth {
                let cols = adaptiveBin(ox, inputSize: width, outputSize: outputWidth)
                let share = gradient[oy * outputWidth + ox] / Float(rows.count * cols.count)
                for y in rows {
                    for x in cols { destination[y * width + x] += share }
                }
            }
        }
    }
}
