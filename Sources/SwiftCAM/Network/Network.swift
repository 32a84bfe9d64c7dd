// Network: a chain of nodes with named, inspectable layers, and its plain forward pass.
// Builders (ResNetBuilder today) produce a Network; the trace (Trace.swift) runs the same chain
// keeping what backward passes need. A Network is immutable and safe to share across threads.

/// A named layer whose output can be inspected or targeted: the output of node `nodeIndex`.
public struct NamedLayer: Sendable, Equatable {
    public let name: String
    public let nodeIndex: Int
}

/// An inference network: input (N, C, H, W) to logits (N, classes).
public final class Network: Sendable {
    /// The inspectable chain: every named layer is the output of one of these nodes.
    public let nodes: [any Node]
    /// The chain `forward` runs: the same function with adjacent steps fused (for a ResNet, the
    /// stem's batch norm folded into conv1 and its ReLU fused). Defaults to `nodes`.
    public let inferenceNodes: [any Node]
    public let layers: [NamedLayer]
    public let inputChannels: Int
    public let numClasses: Int
    /// Architecture name, e.g. "resnet50", or the family name when the layout has no name.
    public let architecture: String
    /// The inferred configuration as a JSON object.
    public let configurationJSON: String

    public init(nodes: [any Node], inferenceNodes: [any Node]? = nil, layers: [NamedLayer], inputChannels: Int,
                numClasses: Int, architecture: String, configurationJSON: String) {
        self.nodes = nodes
        self.inferenceNodes = inferenceNodes ?? nodes
        self.layers = layers
        self.inputChannels = inputChannels
        self.numClasses = numClasses
        self.architecture = architecture
        self.configurationJSON = configurationJSON
    }

    /// Checks an input shape and returns the output shape of every node, in order.
    public func nodeShapes(for input: ActivationShape) throws(SwiftCAMError) -> [ActivationShape] {
        guard input.batch >= 1 else { throw .inputShape("the batch is empty: expected an input of shape (N, \(inputChannels), H, W) with N >= 1") }
        guard input.channels == inputChannels else {
            throw .inputShape("expected an input of shape (N, \(inputChannels), H, W), got \(input.channels) channels (shape \(input))")
        }
        guard input.height >= 1, input.width >= 1 else { throw .inputShape("the input has an empty spatial size \(input)") }
        let (_, overflow) = input.batch.multipliedReportingOverflow(by: input.imageCount)
        guard !overflow, input.count <= Int(Int32.max) * 8 else { throw .outOfMemory("the input \(input) is too large") }
        var shapes: [ActivationShape] = []
        var current = input
        for node in nodes {
            current = try node.outputShape(for: current)
            shapes.append(current)
        }
        return shapes
    }

    /// The shape of a named layer's output for an input shape.
    public func layerShape(_ layer: Int, for input: ActivationShape) throws(SwiftCAMError) -> ActivationShape {
        guard layers.indices.contains(layer) else {
            throw .unknownLayer("layer index \(layer) is out of range: the model has \(layers.count) layers")
        }
        return try nodeShapes(for: input)[layers[layer].nodeIndex]
    }

    /// Logits (N, classes) for `input` (N, C, H, W), read in place.
    public func forward(_ input: UnsafePointer<Float>, shape: ActivationShape) throws(SwiftCAMError) -> FloatBuffer {
        _ = try nodeShapes(for: shape)
        return try run(inferenceNodes[...], on: input, shape: shape)
    }

    /// Logits (B, classes) from `activation` (B, C, h, w), an output of layer `layer`: runs only the
    /// part of the network above that layer (AblationCAM re-runs it for each ablated channel).
    public func forward(fromLayer layer: Int, activation: UnsafePointer<Float>, shape: ActivationShape) throws(SwiftCAMError) -> FloatBuffer {
        guard layers.indices.contains(layer) else {
            throw .unknownLayer("layer index \(layer) is out of range: the model has \(layers.count) layers")
        }
        guard shape.batch >= 1, shape.channels >= 1, shape.height >= 1, shape.width >= 1 else {
            throw .inputShape("the activation shape \(shape) has an empty dimension")
        }
        return try run(nodes[(layers[layer].nodeIndex + 1)...], on: activation, shape: shape)
    }

    /// Runs a stretch of nodes without caches, checking each step's input shape.
    private func run(_ chain: ArraySlice<any Node>, on input: UnsafePointer<Float>, shape: ActivationShape) throws(SwiftCAMError) -> FloatBuffer {
        var current = FloatBuffer(borrowing: input, count: shape.count)
        var currentShape = shape
        for node in chain {
            let outShape = try node.outputShape(for: currentShape)
            current = try node.forward(current, shape: currentShape, cache: nil)
            currentShape = outShape
        }
        return current
    }
}
