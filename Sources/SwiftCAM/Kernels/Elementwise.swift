// Elementwise: residual addition and per-channel affine maps (batch norm in eval mode) for NCHW
// Float32 tensors, with optional fused ReLU, and the bias/residual/ReLU pass that ends conv2dForward.

/// Computes `output = lhs + rhs`, then `max(output, 0)` when `applyReLU` is set.
///
/// `output` may alias `lhs` or `rhs` (in-place residual addition).
public func addForward(
    output: UnsafeMutablePointer<Float>,  // (count)
    lhs: UnsafePointer<Float>,  // (count)
    rhs: UnsafePointer<Float>,  // (count)
    count: Int, applyReLU: Bool
) {
    forEachRange(of: count, costPerItem: 1, alignment: 16) { range in
        if applyReLU {
            for i in range { output[i] = max(lhs[i] + rhs[i], 0) }
        } else {
            for i in range { output[i] = lhs[i] + rhs[i] }
        }
    }
}

/// Computes `output[n, c] = input[n, c] * scale[c] + shift[c]` (batch norm in eval mode), then
/// `max(output, 0)` when `applyReLU` is set. `output` may alias `input`.
public func channelAffineForward(
    output: UnsafeMutablePointer<Float>,  // (N, C, spatial)
    input: UnsafePointer<Float>,  // (N, C, spatial)
    scale: UnsafePointer<Float>,  // (C)
    shift: UnsafePointer<Float>,  // (C)
    batch: Int, channels: Int, spatial: Int, applyReLU: Bool
) {
    for plane in 0..<batch * channels {
        let channel = plane % channels
        let a = scale[channel], b = shift[channel]
        let source = input + plane * spatial, destination = output + plane * spatial
        if applyReLU {
            for i in 0..<spatial { destination[i] = max(source[i] * a + b, 0) }
        } else {
            for i in 0..<spatial { destination[i] = source[i] * a + b }
        }
    }
}

/// Computes the input gradient of `channelAffineForward` without ReLU:
/// `inputGradient[n, c] = outputGradient[n, c] * scale[c]`. `inputGradient` is overwritten and may
/// alias `outputGradient`.
public func channelAffineBackward(
    inputGradient: UnsafeMutablePointer<Float>,  // (N, C, spatial)
    outputGradient: UnsafePointer<Float>,  // (N, C, spatial)
    scale: UnsafePointer<Float>,  // (C)
    batch: Int, channels: Int, spatial: Int
) {
    for plane in 0..<batch * channels {
        let a = scale[plane % channels]
        let source = outputGradient + plane * spatial, destination = inputGradient + plane * spatial
        for i in 0..<spatial { destination[i] = source[i] * a }
    }
}

/// The pass that ends conv2dForward, on channels `channels` of its GEMM output, in place:
/// `x = x + bias[c]`, then `+ residual`, then `max(x, 0)` when `applyReLU` is set, each step
/// optional (`bias` and `residual` may be nil). The additions keep this order, so a block's
/// output rounds exactly as conv, bias, then shortcut addition in separate passes would.
func convolutionEpilogue(
    _ values: UnsafeMutablePointer<Float>,  // (C, spatial)
    channels: Range<Int>, spatial: Int,
    bias: UnsafePointer<Float>?,  // (C)
    residual: UnsafePointer<Float>?,  // (C, spatial)
    applyReLU: Bool
) {
    for channel in channels {
        let plane = values + channel * spatial
        let b = bias?[channel] ?? 0  // without a bias, adding 0 changes at most the sign of a zero
        switch (residual, applyReLU) {
        case (let residual?, true):
            let shortcut = residual + channel * spatial
            for i in 0..<spatial { plane[i] = max((plane[i] + b) + shortcut[i], 0) }
        case (let residual?, false):
            let shortcut = residual + channel * spatial
            for i in 0..<spatial { plane[i] = (plane[i] + b) + shortcut[i] }
        case (nil, true):
            for i in 0..<spatial { plane[i] = max(plane[i] + b, 0) }
        case (nil, false):
            if bias != nil { for i in 0..<spatial { plane[i] += b } }
        }
    }
}
