// Elementwise: residual addition and per-channel affine maps (batch norm in eval mode) for NCHW
// Float32 tensors, with optional fused ReLU, and the channel-bias pass that conv2dForward ends with.

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

/// Adds `bias[c]` to every element of channel `c` in place (nothing when `bias` is nil), then
/// applies `max(x, 0)` when `applyReLU` is set: one pass over the output of a GEMM.
func addChannelBias(
    _ values: UnsafeMutablePointer<Float>,  // (C, spatial)
    bias: UnsafePointer<Float>?,  // (C)
    channels: Int, spatial: Int, applyReLU: Bool
) {
    switch (bias, applyReLU) {
    case (nil, false):
        return
    case (nil, true):
        reluForward(output: values, input: values, count: channels * spatial)
    case (let bias?, false):
        for channel in 0..<channels {
            let b = bias[channel], plane = values + channel * spatial
            for i in 0..<spatial { plane[i] += b }
        }
    case (let bias?, true):
        for channel in 0..<channels {
            let b = bias[channel], plane = values + channel * spatial
            for i in 0..<spatial { plane[i] = max(plane[i] + b, 0) }
        }
    }
}
