// ConvNode: a convolution as a graph node (ResNet's stem conv1, kept unfolded so that its output
// is exactly torchvision's conv1 output, before batch norm).

public struct ConvNode: Node {
    public let conv: ConvLayer

    public init(conv: ConvLayer) { self.conv = conv }

    public func outputShape(for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape {
        try conv.outputShape(for: input)
    }

    public func forward(_ input: FloatBuffer, shape: ActivationShape, cache: NodeCache?) throws(SwiftCAMError) -> FloatBuffer {
        try conv.forward(input, shape: shape, applyReLU: false)
    }

    public func backward(_ outputGradient: FloatBuffer, inputShape: ActivationShape, cache: NodeCache,
                         seedsPerImage: Int) throws(SwiftCAMError) -> FloatBuffer {
        try conv.backwardInput(outputGradient, inputShape: inputShape.with(batch: inputShape.batch * seedsPerImage))
    }
}
