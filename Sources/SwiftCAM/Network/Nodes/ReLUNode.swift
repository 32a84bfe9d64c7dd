// ReLUNode: max(x, 0) as a graph node (ResNet's stem relu). Keeps its output for the backward mask.

public struct ReLUNode: Node {
    public init() {}

    public func outputShape(for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape { input }

    public func forward(_ input: FloatBuffer, shape: ActivationShape, cache: NodeCache?) throws(SwiftCAMError) -> FloatBuffer {
        let output = try FloatBuffer(count: shape.count)
        reluForward(output: output.pointer, input: input.pointer, count: shape.count)
        cache?.activations = [output]
        return output
    }

    public func backward(_ outputGradient: FloatBuffer, inputShape: ActivationShape, cache: NodeCache,
                         context: BackwardContext) throws(SwiftCAMError) -> FloatBuffer {
        guard let output = cache.activations.first else { throw .invalidArgument("ReLU backward without a forward cache") }
        let inputGradient = try FloatBuffer(count: outputGradient.count)
        inputGradient.pointer.update(from: outputGradient.pointer, count: outputGradient.count)
        reluBackwardBroadcast(inputGradient, output: output, images: inputShape.batch, context: context,
                              imageCount: inputShape.imageCount)
        return inputGradient
    }
}
