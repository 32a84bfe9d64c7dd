// Trace: one forward pass kept for backward passes. It stores the requested layers' activations
// and, for the nodes above the deepest of them only, what their backward pass needs (ReLU outputs,
// pooling indices). A backward pass runs from the logits down to the deepest requested layer and
// stops there; no weight gradients are computed. `Trace.inputLayer` requests the network's input
// itself, for gradients down to the image (guided backpropagation).

/// A forward pass with the state needed to differentiate scores with respect to layer outputs.
public final class Trace {
    /// The layer index that stands for the network's input (N, C, H, W).
    public static let inputLayer = -1

    public let network: Network
    public let inputShape: ActivationShape
    /// Layer indices (into `network.layers`) requested at creation, in the caller's order.
    public let requestedLayers: [Int]
    /// The logits, (N, classes).
    public let logits: FloatBuffer
    private let nodeShapes: [ActivationShape]
    private let deepestNode: Int
    private var nodeOutputs: [Int: FloatBuffer] = [:]
    private var caches: [Int: NodeCache] = [:]

    /// Runs the forward pass on `input` (N, C, H, W); the input is not retained.
    public init(network: Network, input: UnsafePointer<Float>, shape: ActivationShape, layers: [Int]) throws(SwiftCAMError) {
        guard !layers.isEmpty else { throw .invalidArgument("no layers requested: give at least one layer") }
        for layer in layers where layer != Self.inputLayer && !network.layers.indices.contains(layer) {
            throw .unknownLayer("layer index \(layer) is out of range: the model has \(network.layers.count) layers")
        }
        guard Set(layers).count == layers.count else { throw .invalidArgument("a layer is requested twice") }
        self.network = network
        self.inputShape = shape
        self.requestedLayers = layers
        self.nodeShapes = try network.nodeShapes(for: shape)
        let requestedNodes = Set(layers.map { Self.nodeIndex(of: $0, in: network) })
        self.deepestNode = requestedNodes.min() ?? 0

        var current = FloatBuffer(borrowing: input, count: shape.count)
        var currentShape = shape
        if requestedNodes.contains(Self.inputLayer) {
            let copy = try FloatBuffer(count: shape.count)
            copy.pointer.update(from: input, count: shape.count)
            nodeOutputs[Self.inputLayer] = copy
        }
        for (index, node) in network.nodes.enumerated() {
            let cache = index > deepestNode ? NodeCache() : nil
            current = try node.forward(current, shape: currentShape, cache: cache)
            currentShape = nodeShapes[index]
            if let cache { caches[index] = cache }
            if requestedNodes.contains(index) { nodeOutputs[index] = current }
        }
        self.logits = current
    }

    /// The node whose output a layer index names; -1 (the input) for `inputLayer`.
    private static func nodeIndex(of layer: Int, in network: Network) -> Int {
        layer == inputLayer ? -1 : network.layers[layer].nodeIndex
    }

    /// The output shape of node `index`; the input's for -1.
    private func shape(ofNode index: Int) -> ActivationShape {
        index < 0 ? inputShape : nodeShapes[index]
    }

    /// The shape of the position-th requested layer's activation.
    public func activationShape(at position: Int) throws(SwiftCAMError) -> ActivationShape {
        guard requestedLayers.indices.contains(position) else {
            throw .invalidArgument("position \(position) is out of range: \(requestedLayers.count) layers were requested")
        }
        return shape(ofNode: Self.nodeIndex(of: requestedLayers[position], in: network))
    }

    /// The activation (N, C, h, w) of the position-th requested layer.
    public func activation(at position: Int) throws(SwiftCAMError) -> FloatBuffer {
        _ = try activationShape(at: position)
        guard let output = nodeOutputs[Self.nodeIndex(of: requestedLayers[position], in: network)] else {
            throw .invalidArgument("activation of position \(position) was not kept")
        }
        return output
    }

    /// Gradients of K scores per image with respect to every requested layer.
    /// - Parameters:
    ///   - seeds: (N, K, classes), d(score)/d(logits).
    ///   - reluRule: `.guided` for guided backpropagation; `.standard` for true gradients.
    ///   - biasGradients: receives the output gradient of every biased layer above the deepest
    ///     requested one (FullGrad), in reverse module order.
    /// - Returns: one (N*K, C, h, w) gradient per requested layer, in request order.
    public func backward(seeds: UnsafePointer<Float>, seedsPerImage: Int, reluRule: ReLUBackwardRule = .standard,
                         biasGradients: (any BiasGradientSink)? = nil) throws(SwiftCAMError) -> [FloatBuffer] {
        guard seedsPerImage >= 1 else { throw .invalidArgument("seeds per image must be at least 1, got \(seedsPerImage)") }
        let context = BackwardContext(seedsPerImage: seedsPerImage, reluRule: reluRule, biasGradients: biasGradients)
        let rows = inputShape.batch * seedsPerImage
        let gradient = try FloatBuffer(count: rows * network.numClasses)
        gradient.pointer.update(from: seeds, count: gradient.count)
        var current = gradient
        var gradientsByNode: [Int: FloatBuffer] = [:]
        let wanted = Set(requestedLayers.map { Self.nodeIndex(of: $0, in: network) })
        var index = network.nodes.count - 1
        while index > deepestNode {
            guard let cache = caches[index] else { throw .invalidArgument("missing forward cache of node \(index)") }
            current = try network.nodes[index].backward(current, inputShape: shape(ofNode: index - 1), cache: cache, context: context)
            index -= 1
            if wanted.contains(index) { gradientsByNode[index] = current }
        }
        return try requestedLayers.map { (layer) throws(SwiftCAMError) -> FloatBuffer in
            guard let gradient = gradientsByNode[Self.nodeIndex(of: layer, in: network)] else {
                throw .invalidArgument("no gradient reached layer \(layer)")
            }
            return gradient
        }
    }
}
