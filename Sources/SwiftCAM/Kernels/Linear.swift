// Linear: the fully connected layer (torch.nn.Linear) forward and input gradient, on OpenBLAS.

import COpenBLAS

/// Computes `output = input · weightᵀ + bias` as `torch.nn.Linear`; `bias` may be nil.
/// `output` must not overlap the other buffers.
public func linearForward(
    output: UnsafeMutablePointer<Float>,  // (N, out)
    input: UnsafePointer<Float>,  // (N, in)
    weight: UnsafePointer<Float>,  // (out, in)
    bias: UnsafePointer<Float>?,  // (out)
    batch: Int, inFeatures: Int, outFeatures: Int
) {
    var beta: Float = 0
    if let bias {
        for row in 0..<batch { (output + row * outFeatures).update(from: bias, count: outFeatures) }
        beta = 1
    }
    if batch == 1 {
        // OpenBLAS 0.3.21 does not forward a one-row sgemm to sgemv by itself.
        cblas_sgemv(
            CblasRowMajor, CblasNoTrans, blasint(outFeatures), blasint(inFeatures),
            1, weight, blasint(inFeatures), input, 1, beta, output, 1)
    } else {
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans,
            blasint(batch), blasint(outFeatures), blasint(inFeatures),
            1, input, blasint(inFeatures), weight, blasint(inFeatures),
            beta, output, blasint(outFeatures))
    }
}

/// Computes the input gradient of `linearForward`: `inputGradient = outputGradient · weight`.
/// Overwrites `inputGradient`, which must not overlap the other buffers.
public func linearBackwardInput(
    inputGradient: UnsafeMutablePointer<Float>,  // (N, in)
    outputGradient: UnsafePointer<Float>,  // (N, out)
    weight: UnsafePointer<Float>,  // (out, in)
    batch: Int, inFeatures: Int, outFeatures: Int
) {
    if batch == 1 {
        cblas_sgemv(
            CblasRowMajor, CblasTrans, blasint(outFeatures), blasint(inFeatures),
            1, weight, blasint(inFeatures), outputGradient, 1, 0, inputGradient, 1)
    } else {
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasNoTrans,
            blasint(batch), blasint(inFeatures), blasint(outFeatures),
            1, outputGradient, blasint(outFeatures), weight, blasint(inFeatures),
            0, inputGradient, blasint(inFeatures))
    }
}
