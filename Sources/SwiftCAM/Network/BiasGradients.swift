// BiasGradients: how a backward pass reports the gradient at the output of every layer with a
// bias (a batch-norm-folded convolution, the stem's batch norm), which FullGrad needs besides the
// input gradient. Nodes list their biases in module order (`Node.biases`) and, when the
// backward context carries a sink, hand it each biased layer's output gradient as the pass
// reaches it: in backward order, the exact reverse of module order (a residual block reports its
// downsample first, then its branch from the last layer down).

/// Receives, during one backward pass, the gradient at each biased layer's output.
/// A sink belongs to one backward pass (one thread).
public protocol BiasGradientSink: AnyObject, Sendable {
    /// - Parameters:
    ///   - gradient: d(score)/d(layer output), (N*K, C, h, w), image-major; read during the call only.
    ///   - shape: (N*K, C, h, w).
    ///   - bias: the layer's bias (C); for a folded batch norm, beta - mean * gamma / sqrt(var + eps).
    func receive(gradient: FloatBuffer, shape: ActivationShape, bias: FloatBuffer) throws(SwiftCAMError)
}

extension Network {
    /// The biases of every layer that reports to a `BiasGradientSink`, in module order (for a
    /// torchvision ResNet: every BatchNorm2d, as pytorch-grad-cam's FullGrad enumerates them).
    public var biasLayers: [FloatBuffer] { nodes.flatMap(\.biases) }
}
