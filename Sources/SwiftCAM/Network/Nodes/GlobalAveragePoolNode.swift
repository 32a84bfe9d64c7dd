// GlobalAveragePoolNode: adaptive average pooling to 1x1 (ResNet's avgpool), output (N, C, 1, 1).

public struct GlobalAveragePoolNode: Node {
    public init() {}

    public func outputShape(for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape {
        ActivationShape(batch: input.batch, channels: input.channels, height: 1, width: 1)
    }

    public func forward(_ input: FloatBuffer, shape: ActivationShape, cache: NodeCache?) throws(SwiftCAMError) -> FloatBuffer {
        let output = try FloatBuffer(count: shape.batch * shape.channels)
        adaptiveAvgPool2dForward(output: output.pointer, input: input.pointer, batch: shape.batch, channels: shape.channels,
                                 height: shape.height, width: shape.width, outputHeight: 1, outputWidth: 1)
        return output
    }

    public func backward(_ outputGradient: FloatBuffer, inputShape: ActivationShape, cache: NodeCache,
                         context: BackwardContext) throws(SwiftCAMError) -> FloatBuffer {
        let seedsPerImage = context.seedsPerImage
        let rows = inputShape.batch * seedsPerImage
        let inputGradient = try FloatBuffer(count: rows * inputShape.imageCount)
        adaptiveAvgPool2dBackward(inputGradient: inputGradient.pointer, outputGradient: outputGradient.pointer, batch: rows,
                                  channels: inputShape.channels, height: inputShape.height, width: inputShape.width,
                                  outputHeight: 1, outputWidth: 1)
        return inputGradient
    }
}
