// Activation: ReLU forward and backward, plus the guided-backpropagation variant of the backward.
// All are elementwise over `count` Float32 values, whatever the tensor's shape.

/// Computes `output = max(input, 0)`. `output` may alias `input` (in-place ReLU).
public func reluForward(
    output: UnsafeMutablePointer<Float>,  // (count)
    input: UnsafePointer<Float>,  // (count)
    count: Int
) {
    for i in 0..<count { output[i] = max(input[i], 0) }
}

/// Computes the ReLU input gradient from the forward *output*: the gradient passes where
/// `output > 0` and is 0 elsewhere. `inputGradient` is overwritten and may alias `outputGradient`.
public func reluBackward(
    inputGradient: UnsafeMutablePointer<Float>,  // (count)
    outputGradient: UnsafePointer<Float>,  // (count)
    output: UnsafePointer<Float>,  // (count)
    count: Int
) {
    for i in 0..<count { inputGradient[i] = output[i] > 0 ? outputGradient[i] : 0 }
}

/// Guided-backpropagation ReLU backward: the gradient passes only where `output > 0` and the
/// gradient itself is positive. `inputGradient` is overwritten and may alias `outputGradient`.
public func guidedReLUBackward(
    inputGradient: UnsafeMutablePointer<Float>,  // (count)
    outputGradient: UnsafePointer<Float>,  // (count)
    output: UnsafePointer<Float>,  // (count)
    count: Int
) {
    for i in 0..<count {
        let gradient = outputGradient[i]
        inputGradient[i] = output[i] > 0 && gradient > 0 ? gradient : 0
    }
}
