// ConvNode: a convolution as a graph node, optionally followed by ReLU in the same pass.
// ResNet's stem uses it twice: unfolded (its output is exactly torchvision's conv1 output, before
// batch norm) in the inspectable chain, and with batch norm folded and ReLU fused in the
// inference chain.

public struct ConvNode: Node {
    public let conv: ConvLayer
    public let appliesReLU: Bool

    public init(conv: ConvLayer, appliesReLU: Bool = false) {
        self.conv = conv
        self.appliesReLU = appliesReLU
    }

    public func outputShape(for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape {
        try conv.outputShape(for: input)
    }

    public func forward(_ input: FloatBuffer, shape: ActivationShape, cache: NodeCache?) throws(SwiftCAMError) -> FloatBuffer {
        let output = try conv.forward(input, shape: shape, applyReLU: appliesReLU)
        if appliesReLU { cache?.activations = [output] }
        return output
    }

    public func backward(_ outputGradient: FloatBuffer, inputShape: ActivationShape, cache: NodeCache,
                         context: BackwardContext) throws(SwiftCAMError) -> FloatBuffer {
        let seedsPerImage = context.seedsPerImage
        var gradient = outputGradient  // (N*K, Cout, Ho, Wo)
        if appliesReLU {
            guard let output = cache.activations.first else { throw .invalidArgument("conv backward without a forward cache") }
            gradient = try FloatBuffer(count: outputGradient.count)
            gradient.pointer.update(from: outputGradient.pointer, count: outputGradient.count)
            reluBackwardBroadcast(gradient, output: output, images: inputShape.batch, context: context,
                                  imageCount: try outputShape(for: inputShape).imageCount)
        }
        if let bias = conv.bias, let sink = context.biasGradients {
            // The gradient at the (pre-ReLU) convolution output.
            try sink.receive(gradient: gradient, shape: try outputShape(for: inputShape).with(batch: inputShape.batch * seedsPerImage),
                             bias: bias)
        }
        return try conv.backwardInput(gradient, inputShape: inputShape.with(batch: inputShape.batch * seedsPerImage))
    }

    public var biases: [FloatBuffer] { conv.bias.map { [$0] } ?? [] }
}
