// ChannelAffineNode: batch norm in eval mode as a per-channel affine map, y = x * scale + shift
// (ResNet's stem bn1; batch norms after other convolutions are folded into them).

public struct ChannelAffineNode: Node {
    public let scale: FloatBuffer  // (C)
    public let shift: FloatBuffer  // (C)

    public init(batchNorm: BatchNormParameters) throws(SwiftCAMError) {
        let (scale, shift) = batchNorm.affine()
        self.scale = try FloatBuffer(scale.map { Float($0) })
        self.shift = try FloatBuffer(shift.map { Float($0) })
    }

    public func outputShape(for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape {
        guard input.channels == scale.count else {
            throw .inputShape("batch norm expects \(scale.count) channels, got \(input.channels)")
        }
        return input
    }

    public func forward(_ input: FloatBuffer, shape: ActivationShape, cache: NodeCache?) throws(SwiftCAMError) -> FloatBuffer {
        let output = try FloatBuffer(count: try outputShape(for: shape).count)
        channelAffineForward(output: output.pointer, input: input.pointer, scale: scale.pointer, shift: shift.pointer,
                             batch: shape.batch, channels: shape.channels, spatial: shape.planeCount, applyReLU: false)
        return output
    }

    public func backward(_ outputGradient: FloatBuffer, inputShape: ActivationShape, cache: NodeCache,
                         context: BackwardContext) throws(SwiftCAMError) -> FloatBuffer {
        let seedsPerImage = context.seedsPerImage
        let gradientShape = inputShape.with(batch: inputShape.batch * seedsPerImage)
        try context.biasGradients?.receive(gradient: outputGradient, shape: gradientShape, bias: shift)
        let inputGradient = try FloatBuffer(count: gradientShape.count)
        channelAffineBackward(inputGradient: inputGradient.pointer, outputGradient: outputGradient.pointer, scale: scale.pointer,
                              batch: gradientShape.batch, channels: gradientShape.channels, spatial: gradientShape.planeCount)
        return inputGradient
    }

    public var biases: [FloatBuffer] { [shift] }
}
