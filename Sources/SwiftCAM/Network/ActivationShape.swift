// ActivationShape: the (N, C, H, W) shape of a tensor flowing through a network.

/// The shape of an NCHW activation. Vectors (such as logits) are (N, C, 1, 1).
public struct ActivationShape: Equatable, Sendable, CustomStringConvertible {
    public var batch: Int
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(batch: Int, channels: Int, height: Int, width: Int) {
        self.batch = batch
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// Elements of one image: C * H * W.
    public var imageCount: Int { channels * height * width }
    /// Elements of one channel plane: H * W.
    public var planeCount: Int { height * width }
    /// All elements: N * C * H * W.
    public var count: Int { batch * imageCount }

    /// The same shape with another batch size (backward passes run N * K "images").
    public func with(batch: Int) -> ActivationShape {
        ActivationShape(batch: batch, channels: channels, height: height, width: width)
    }

    public var dimensions: [Int] { [batch, channels, height, width] }
    public var description: String { "(\(batch), \(channels), \(height), \(width))" }
}
