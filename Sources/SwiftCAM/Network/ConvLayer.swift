// ConvLayer: a convolution with its (possibly batch-norm-folded) weights and bias, the building
// block that nodes compose. Folding: in eval mode y = gamma * (conv(x) - mean) / sqrt(var + eps) + beta
// is conv(x) with weights scaled per output channel and a bias, computed here in Double.

/// A 2-D convolution with optional bias; applies ReLU in the same pass when asked.
public struct ConvLayer: Sendable {
    public let shape: Conv2dShape
    public let weight: FloatBuffer  // (Cout, Cin / groups, kh, kw)
    public let bias: FloatBuffer?   // (Cout)
    /// The weights again, packed for swiftcam's own GEMM kernel; nil where it does not run (the
    /// forward pass then uses OpenBLAS). The backward pass always reads `weight`.
    public let packedWeight: PackedWeights?

    public init(shape: Conv2dShape, weight: FloatBuffer, bias: FloatBuffer?) {
        self.shape = shape
        self.weight = weight
        self.bias = bias
        let fits = shape.isValid && weight.count == shape.weightCount
        packedWeight = fits ? PackedWeights.packing(weight.pointer, shape: shape) : nil
    }

    public func outputShape(for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape {
        guard input.channels == shape.inChannels else {
            throw .inputShape("a convolution expects \(shape.inChannels) input channels, got \(input.channels) (input shape \(input))")
        }
        guard let size = shape.outputSize(height: input.height, width: input.width) else {
            throw .inputShape("the input is too small for the network: a \(shape.kernelHeight)x\(shape.kernelWidth) convolution (stride \(shape.strideHeight), padding \(shape.paddingHeight)) cannot run on a \(input.height)x\(input.width) feature map")
        }
        return ActivationShape(batch: input.batch, channels: shape.outChannels, height: size.height, width: size.width)
    }

    /// output (N, Cout, Ho, Wo) = [relu](conv(input (N, Cin, H, W)) + bias [+ residual (N, Cout, Ho, Wo)]).
    public func forward(_ input: FloatBuffer, shape inputShape: ActivationShape, adding residual: FloatBuffer? = nil,
                        applyReLU: Bool) throws(SwiftCAMError) -> FloatBuffer {
        let outShape = try outputShape(for: inputShape)
        let output = try FloatBuffer(count: outShape.count)
        let workspace = try FloatBuffer(count: shape.workspaceCount(height: inputShape.height, width: inputShape.width, batch: inputShape.batch))
        conv2dForward(output: output.pointer, input: input.pointer, weight: weight.pointer, packedWeight: packedWeight,
                      bias: bias.map { UnsafePointer($0.pointer) },
                      residual: residual.map { UnsafePointer($0.pointer) },
                      batch: inputShape.batch, height: inputShape.height, width: inputShape.width,
                      shape: shape, applyReLU: applyReLU, workspace: workspace.buffer)
        return output
    }

    /// The input gradient (B, Cin, H, W) for an output gradient (B, Cout, Ho, Wo), any batch B.
    public func backwardInput(_ outputGradient: FloatBuffer, inputShape: ActivationShape) throws(SwiftCAMError) -> FloatBuffer {
        let inputGradient = try FloatBuffer(count: inputShape.count)
        let workspace = try FloatBuffer(count: shape.columnWorkspaceCount(height: inputShape.height, width: inputShape.width, batch: inputShape.batch))
        conv2dBackwardInput(inputGradient: inputGradient.pointer, outputGradient: outputGradient.pointer, weight: weight.pointer,
                            batch: inputShape.batch, height: inputShape.height, width: inputShape.width,
                            shape: shape, workspace: workspace.pointer)
        return inputGradient
    }
}

/// Batch-norm parameters in eval mode, as torchvision stores them.
public struct BatchNormParameters {
    public var weight: [Float]       // gamma (C)
    public var bias: [Float]         // beta (C)
    public var runningMean: [Float]  // (C)
    public var runningVar: [Float]   // (C)
    public var epsilon: Double = 1e-5

    /// The affine map y = x * scale + shift it applies, in Double so folding loses nothing.
    public func affine() -> (scale: [Double], shift: [Double]) {
        let scale = (0..<weight.count).map { Double(weight[$0]) / (Double(runningVar[$0]) + epsilon).squareRoot() }
        let shift = (0..<weight.count).map { Double(bias[$0]) - Double(runningMean[$0]) * scale[$0] }
        return (scale, shift)
    }
}

extension ConvLayer {
    /// The convolution followed by batch norm, folded into one convolution with a bias.
    /// `weight` is (Cout, Cin / groups, kh, kw); it is read, not retained.
    public static func folding(shape: Conv2dShape, weight: UnsafeBufferPointer<Float>, batchNorm: BatchNormParameters) throws(SwiftCAMError) -> ConvLayer {
        let perChannel = weight.count / shape.outChannels
        let folded = try FloatBuffer(count: weight.count)  // (Cout, Cin / groups, kh, kw)
        let (scale, shift) = batchNorm.affine()
        for c in 0..<shape.outChannels {
            for i in c * perChannel..<(c + 1) * perChannel { folded.pointer[i] = Float(Double(weight[i]) * scale[c]) }
        }
        return ConvLayer(shape: shape, weight: folded, bias: try FloatBuffer(shift.map { Float($0) }))
    }
}
