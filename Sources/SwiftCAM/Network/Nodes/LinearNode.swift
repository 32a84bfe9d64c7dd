// LinearNode: a fully connected layer on (N, C, 1, 1) features (ResNet's fc), output (N, classes, 1, 1).

public struct LinearNode: Node {
    public let inFeatures: Int
    public let outFeatures: Int
    public let weight: FloatBuffer  // (out, in)
    public let bias: FloatBuffer    // (out)

    public init(inFeatures: Int, outFeatures: Int, weight: FloatBuffer, bias: FloatBuffer) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.weight = weight
        self.bias = bias
    }

    public func outputShape(for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape {
        guard input.imageCount == inFeatures else {
            throw .inputShape("the classifier expects \(inFeatures) features per image, got \(input.imageCount)")
        }
        return ActivationShape(batch: input.batch, channels: outFeatures, height: 1, width: 1)
    }

    public func forward(_ input: FloatBuffer, shape: ActivationShape, cache: NodeCache?) throws(SwiftCAMError) -> FloatBuffer {
        let output = try FloatBuffer(count: try outputShape(for: shape).count)
        linearForward(output: output.pointer, input: input.pointer, weight: weight.pointer, bias: bias.pointer,
                      batch: shape.batch, inFeatures: inFeatures, outFeatures: outFeatures)
        return output
    }

    public func backward(_ outputGradient: FloatBuffer, inputShape: ActivationShape, cache: NodeCache,
                         context: BackwardContext) throws(SwiftCAMError) -> FloatBuffer {
        let seedsPerImage = context.seedsPerImage
        let rows = inputShape.batch * seedsPerImage
        let inputGradient = try FloatBuffer(count: rows * inFeatures)
        linearBackwardInput(inputGradient: inputGradient.pointer, outputGradient: outputGradient.pointer, weight: weight.pointer,
                            batch: rows, inFeatures: inFeatures, outFeatures: outFeatures)
        return inputGradient
    }
}
