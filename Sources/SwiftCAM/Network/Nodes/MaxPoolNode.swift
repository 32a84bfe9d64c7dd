// MaxPoolNode: 2-D max pooling as torch.nn.MaxPool2d (ResNet's 3x3, stride 2, padding 1 stem pool).
// Keeps the argmax positions for the backward pass.

public struct MaxPoolNode: Node {
    public let kernel: Int
    public let stride: Int
    public let padding: Int

    public init(kernel: Int, stride: Int, padding: Int) {
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }

    public func outputShape(for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape {
        let height = (input.height + 2 * padding - kernel) / stride + 1
        let width = (input.width + 2 * padding - kernel) / stride + 1
        guard input.height + 2 * padding >= kernel, input.width + 2 * padding >= kernel, height >= 1, width >= 1 else {
            throw .inputShape("the input is too small for the network: a \(kernel)x\(kernel) max pool cannot run on a \(input.height)x\(input.width) feature map")
        }
        return ActivationShape(batch: input.batch, channels: input.channels, height: height, width: width)
    }

    public func forward(_ input: FloatBuffer, shape: ActivationShape, cache: NodeCache?) throws(SwiftCAMError) -> FloatBuffer {
        let outShape = try outputShape(for: shape)
        let output = try FloatBuffer(count: outShape.count)
        if let cache {
            var indices = [Int32](repeating: 0, count: outShape.count)
            indices.withUnsafeMutableBufferPointer { indexBuffer in
                maxPool2dForward(output: output.pointer, indices: indexBuffer.baseAddress, input: input.pointer,
                                 batch: shape.batch, channels: shape.channels, height: shape.height, width: shape.width,
                                 kernel: kernel, stride: stride, padding: padding)
            }
            cache.indices = indices
        } else {
            maxPool2dForward(output: output.pointer, indices: nil, input: input.pointer,
                             batch: shape.batch, channels: shape.channels, height: shape.height, width: shape.width,
                             kernel: kernel, stride: stride, padding: padding)
        }
        return output
    }

    public func backward(_ outputGradient: FloatBuffer, inputShape: ActivationShape, cache: NodeCache,
                         context: BackwardContext) throws(SwiftCAMError) -> FloatBuffer {
        let seedsPerImage = context.seedsPerImage
        guard let indices = cache.indices else { throw .invalidArgument("max-pool backward without a forward cache") }
        let outShape = try outputShape(for: inputShape)
        let inputGradient = try FloatBuffer(count: inputShape.imageCount * inputShape.batch * seedsPerImage)
        indices.withUnsafeBufferPointer { indexBuffer in
            forEachSeed(images: inputShape.batch, seedsPerImage: seedsPerImage) { image, slice in
                maxPool2dBackward(inputGradient: inputGradient.pointer + slice * inputShape.imageCount,
                                  outputGradient: outputGradient.pointer + slice * outShape.imageCount,
                                  indices: indexBuffer.baseAddress! + image * outShape.imageCount,
                                  batch: 1, channels: inputShape.channels,
                                  inputHeight: inputShape.height, inputWidth: inputShape.width,
                                  outputHeight: outShape.height, outputWidth: outShape.width)
            }
        }
        return inputGradient
    }
}
