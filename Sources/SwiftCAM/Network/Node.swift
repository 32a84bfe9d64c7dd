// Node: one step of a network graph (a convolution, a residual block, a pooling, ...).
// A network is a chain of nodes; a node may be internally branched (a residual block), which is
// how other CNN families (VGG, Inception) can be added as new builders of nodes.

/// What a node keeps from its forward pass so that its backward pass can run.
public final class NodeCache {
    /// Saved activations (the node decides which), each (N, ...).
    public var activations: [FloatBuffer] = []
    /// Saved integer indices (max-pool argmax positions), (N, C, Ho, Wo).
    public var indices: [Int32]? = nil
    public init() {}
}

/// One differentiable step of a network.
public protocol Node: Sendable {
    /// The output shape for an input shape, or `SwiftCAMError.inputShape` when the input
    /// does not fit (wrong channel count, too small).
    func outputShape(for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape

    /// Computes the output for `input` (shape `shape`). When `cache` is given, keeps in it what
    /// `backward` needs.
    func forward(_ input: FloatBuffer, shape: ActivationShape, cache: NodeCache?) throws(SwiftCAMError) -> FloatBuffer

    /// The gradient with respect to the input, (N*K, C, H, W), from the gradient with respect to
    /// the output, (N*K, C', H', W'): K gradients per image (one per score), image-major.
    /// `inputShape` is the forward input's shape (batch N).
    func backward(_ outputGradient: FloatBuffer, inputShape: ActivationShape, cache: NodeCache,
                  seedsPerImage: Int) throws(SwiftCAMError) -> FloatBuffer
}

/// Calls `body(image, seed)` for each of the N*K gradient slices, image-major, so that per-image
/// forward caches (ReLU outputs, pooling indices) can be applied to all K gradients of an image.
@inline(__always)
func forEachSeed(images: Int, seedsPerImage: Int, _ body: (_ image: Int, _ slice: Int) -> Void) {
    for image in 0..<images {
        for seed in 0..<seedsPerImage { body(image, image * seedsPerImage + seed) }
    }
}

/// Applies the ReLU mask of a forward output (N, per-image count) to a gradient (N*K, same).
func reluBackwardBroadcast(_ gradient: FloatBuffer, output: FloatBuffer, images: Int, seedsPerImage: Int, imageCount: Int) {
    forEachSeed(images: images, seedsPerImage: seedsPerImage) { image, slice in
        let g = gradient.pointer + slice * imageCount
        reluBackward(inputGradient: g, outputGradient: g, output: output.pointer + image * imageCount, count: imageCount)
    }
}
