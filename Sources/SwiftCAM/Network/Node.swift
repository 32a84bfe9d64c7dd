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
    /// the output, (N*K, C', H', W'): K = `context.seedsPerImage` gradients per image (one per
    /// score), image-major. `inputShape` is the forward input's shape (batch N).
    func backward(_ outputGradient: FloatBuffer, inputShape: ActivationShape, cache: NodeCache,
                  context: BackwardContext) throws(SwiftCAMError) -> FloatBuffer

    /// The biases (C) of the layers inside this node whose output gradients `backward` reports
    /// to `context.biasGradients`, in module order. Empty by default.
    var biases: [FloatBuffer] { get }
}

extension Node {
    public var biases: [FloatBuffer] { [] }
}

/// How gradients pass through ReLUs.
public enum ReLUBackwardRule: Sendable {
    /// The true gradient: passes where the forward output was positive.
    case standard
    /// Guided backpropagation (Springenberg et al.): passes only positive gradients, and only where
    /// the forward output was positive.
    case guided
}

/// What every node's backward pass needs to know besides its own cache.
public struct BackwardContext: Sendable {
    /// K: gradients per image, image-major in every gradient buffer.
    public var seedsPerImage: Int
    public var reluRule: ReLUBackwardRule
    /// When set, receives the output gradient of every biased layer (FullGrad), see BiasGradients.swift.
    public var biasGradients: (any BiasGradientSink)?

    public init(seedsPerImage: Int, reluRule: ReLUBackwardRule = .standard, biasGradients: (any BiasGradientSink)? = nil) {
        self.seedsPerImage = seedsPerImage
        self.reluRule = reluRule
        self.biasGradients = biasGradients
    }
}

/// Calls `body(image, seed)` for each of the N*K gradient slices, image-major, so that per-image
/// forward caches (ReLU outputs, pooling indices) can be applied to all K gradients of an image.
@inline(__always)
func forEachSeed(images: Int, seedsPerImage: Int, _ body: (_ image: Int, _ slice: Int) -> Void) {
    for image in 0..<images {
        for seed in 0..<seedsPerImage { body(image, image * seedsPerImage + seed) }
    }
}

/// Applies, in place, the ReLU backward rule with the mask of a forward output (N, per-image
/// count) to a gradient (N*K, same).
func reluBackwardBroadcast(_ gradient: FloatBuffer, output: FloatBuffer, images: Int, context: BackwardContext, imageCount: Int) {
    forEachSeed(images: images, seedsPerImage: context.seedsPerImage) { image, slice in
        let g = gradient.pointer + slice * imageCount
        let mask = output.pointer + image * imageCount
        switch context.reluRule {
        case .standard: reluBackward(inputGradient: g, outputGradient: g, output: mask, count: imageCount)
        case .guided: guidedReLUBackward(inputGradient: g, outputGradient: g, output: mask, count: imageCount)
        }
    }
}
