// Trace: one forward pass kept for backward passes. It stores the requested layers' activations
// and, for the nodes above the deepest of them only, what their backward pass needs (ReLU outputs,
// pooling indices). A backward pass runs from the logits down to the deepest requested layer and
// stops there; no weight gradients are computed.

/// A forward pass with the state needed to differentiate scores with respect to layer outputs.
public final class Trace {
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
        for layer in layers where !network.layers.indices.contains(layer) {
            throw .unknownLayer("layer index \(layer) is out of range: the model has \(network.layers.count) layers")
        }
        guard Set(layers).count == layers.count else { throw .invalidArgument("a layer is requested twice") }
        self.network = network
        self.inputShape = shape
        self.requestedLayers = layers
        self.nodeShapes = try network.nodeShapes(for: shape)
        let requestedNodes = Set(layers.map { network.layers[$0].nodeIndex })
        self.deepestNode = requestedNodes.min() ?? 0

        var current = FloatBuffer(borrowing: input, count: shape.count)
        var currentShape = shape
        for (index, node) in network.nodes.enumerated() {
            let cache = index > deepestNode ? NodeCache() : nil
            current = try node.forward(current, shape: currentShape, cache: cache)
            currentShape = nodeShapes[index]
            if let cache { caches[index] = cache }
            if requestedNodes.contains(index) { nodeOutputs[index] = current }
        }
        self.logits = current
    }

    /// The shape of the position-th requested layer's activation.
    public func activationShape(at position: Int) throws(SwiftCAMError) -> ActivationShape {
        guard requestedLayers.indices.contains(position) else {
            throw .invalidArgument("position \(position) is out of range: \(requestedLayers.count) layers were requested")
        }
        return nodeShapes[network.layers[requestedLayers[position]].nodeIndex]
    }

    /// The activation (N, C, h, w) of the position-th requested layer.
    public func activation(at position: Int) throws(SwiftCAMError) -> FloatBuffer {
        _ = try activationShape(at: position)
        guard let output = nodeOutputs[network.layers[requestedLayers[position]].nodeIndex] else {
            throw .invalidArgument("activation of position \(position) was not kept")
        }
        return output
    }

    /// Gradients of K scores per image with respect to every requested layer.
    /// - Parameter seeds: (N, K, classes), d(score)/d(logits).
    /// - Returns: one (N*K, C, h, w) gradient per requested layer, in request order.
    public func backward(seeds: UnsafePointer<Float>, seedsPerImage: Int) throws(SwiftCAMError) -> [FloatBuffer] {
        guard seedsPerImage >= 1 else { throw .invalidArgument("seeds per image must be at least 1, got \(seedsPerImage)") }
        let rows = inputShape.batch * seedsPerImage
        let gradient = try FloatBuffer(count: rows * network.numClasses)
        gradient.pointer.update(from: seeds, count: gradient.count)
        var current = gradient
        var gradientsByNode: [Int: FloatBuffer] = [:]
        let wanted = Set(requestedLayers.map { network.layers[$0].nodeIndex })
        var index = network.nodes.count - 1
        while index > deepestNode {
            guard let cache = caches[index] else { throw .invalidArgument("missing forward cache of node \(index)") }
            let belowShape = index == 0 ? inputShape : nodeShapes[index - 1]
            current = try network.nodes[index].backward(current, inputShape: belowShape, cache: cache, seedsPerImage: seedsPerImage)
            index -= 1
            if wanted.contains(index) { gradientsByNode[index] = current }
        }
        return try requestedLayers.map { (layer) throws(SwiftCAMError) -> FloatBuffer in
            guard let gradient = gradientsByNode[network.layers[layer].nodeIndex] else {
                throw .invalidArgument("no gradient reached layer \(network.layers[layer].name)")
            }
            return gradient
        }
    }
}
