// ResidualBlockNode: a ResNet block, out = relu(branch(x) + shortcut(x)). The branch is a chain of
// batch-norm-folded convolutions with ReLU between them (two for BasicBlock, three for Bottleneck);
// the shortcut is the identity or a folded 1x1 "downsample" convolution.
// The last branch convolution adds the shortcut and applies the ReLU in its own epilogue.
// The forward cache keeps each branch ReLU output and the block output: the backward masks.

public struct ResidualBlockNode: Node {
    public let branch: [ConvLayer]
    public let downsample: ConvLayer?

    public init(branch: [ConvLayer], downsample: ConvLayer?) {
        self.branch = branch
        self.downsample = downsample
    }

    /// Shapes of every branch step's output, the last being the block's output.
    private func branchShapes(for input: ActivationShape) throws(SwiftCAMError) -> [ActivationShape] {
        var shapes: [ActivationShape] = []
        var current = input
        for conv in branch {
            current = try conv.outputShape(for: current)
            shapes.append(current)
        }
        return shapes
    }

    public func outputShape(for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape {
        let output = try branchShapes(for: input).last ?? input
        let shortcut = try downsample?.outputShape(for: input) ?? input
        guard shortcut == output else {
            throw .inputShape("residual block: branch output \(output) does not match shortcut \(shortcut)")
        }
        return output
    }

    public func forward(_ input: FloatBuffer, shape: ActivationShape, cache: NodeCache?) throws(SwiftCAMError) -> FloatBuffer {
        _ = try outputShape(for: shape)  // the branch and shortcut shapes agree
        let shortcut = try downsample?.forward(input, shape: shape, applyReLU: false) ?? input  // (N, Cout, Ho, Wo)
        var current = input
        var currentShape = shape
        var saved: [FloatBuffer] = []
        for (index, conv) in branch.enumerated() {
            // The last convolution adds the shortcut and applies the block's ReLU in its epilogue.
            let isLast = index == branch.count - 1
            current = try conv.forward(current, shape: currentShape, adding: isLast ? shortcut : nil, applyReLU: true)
            currentShape = try conv.outputShape(for: currentShape)
            if !isLast { saved.append(current) }
        }
        if let cache {
            cache.activations = saved + [current]
        }
        return current
    }

    public func backward(_ outputGradient: FloatBuffer, inputShape: ActivationShape, cache: NodeCache,
                         context: BackwardContext) throws(SwiftCAMError) -> FloatBuffer {
        let seedsPerImage = context.seedsPerImage
        guard cache.activations.count == branch.count else {
            throw .invalidArgument("residual block backward without a forward cache")
        }
        let shapes = try branchShapes(for: inputShape)
        let images = inputShape.batch
        let rows = images * seedsPerImage
        // d(out) through the final ReLU: (N*K, Cout, Ho, Wo).
        let sumGradient = try FloatBuffer(count: outputGradient.count)
        sumGradient.pointer.update(from: outputGradient.pointer, count: outputGradient.count)
        reluBackwardBroadcast(sumGradient, output: cache.activations[branch.count - 1], images: images,
                              context: context, imageCount: shapes[branch.count - 1].imageCount)
        // Biased layers report in reverse module order: the downsample first, then the branch.
        let sink = context.biasGradients
        if let sink, let bias = downsample?.bias {
            try sink.receive(gradient: sumGradient, shape: shapes[branch.count - 1].with(batch: rows), bias: bias)
        }
        // Down the branch: conv transpose, then the ReLU mask of the step below.
        var gradient = sumGradient  // d(score)/d(branch[index] output), (N*K, C, h, w)
        for index in stride(from: branch.count - 1, through: 0, by: -1) {
            let belowShape = index == 0 ? inputShape : shapes[index - 1]
            if let sink, let bias = branch[index].bias {
                try sink.receive(gradient: gradient, shape: shapes[index].with(batch: rows), bias: bias)
            }
            gradient = try branch[index].backwardInput(gradient, inputShape: belowShape.with(batch: rows))
            if index > 0 {
                reluBackwardBroadcast(gradient, output: cache.activations[index - 1], images: images,
                                      context: context, imageCount: belowShape.imageCount)
            }
        }
        // Plus the shortcut's gradient.
        let shortcutGradient = try downsample?.backwardInput(sumGradient, inputShape: inputShape.with(batch: rows)) ?? sumGradient
        addForward(output: gradient.pointer, lhs: gradient.pointer, rhs: shortcutGradient.pointer, count: gradient.count, applyReLU: false)
        return gradient
    }

    /// Module order, as torchvision registers them: bn1, bn2, (bn3), downsample.1.
    public var biases: [FloatBuffer] { branch.compactMap(\.bias) + (downsample?.bias.map { [$0] } ?? []) }
}
