// ResNetBuilder: turns torchvision ResNet weights into a Network: stem (conv1, bn1, relu, maxpool,
// kept separate so each has torchvision's output), residual blocks with batch norm folded into
// their convolutions, global average pool and fc. Every tensor's shape is checked against the
// inferred layout, and tensors the layout does not use are reported.

public enum ResNetBuilder {
    /// Builds the network described by `source`.
    public static func build(from source: any WeightSource) throws(SwiftCAMError) -> Network {
        let weights = WeightReader(source)
        let config = try ResNetConfiguration.infer(from: weights)
        var nodes: [any Node] = []
        var layers: [NamedLayer] = []
        func append(_ node: any Node, name: String) {
            nodes.append(node)
            layers.append(NamedLayer(name: name, nodeIndex: nodes.count - 1))
        }

        let stemShape = Conv2dShape(inChannels: config.inputChannels, outChannels: config.stemWidth, kernelHeight: 7, kernelWidth: 7,
                                    strideHeight: 2, strideWidth: 2, paddingHeight: 3, paddingWidth: 3)
        let stemNorm = try readBatchNorm("bn1", channels: config.stemWidth, from: weights)
        let (stemConv, fusedStemConv) = try weights.withTensor("conv1.weight", shape: [config.stemWidth, config.inputChannels, 7, 7]) {
            (weight) throws(SwiftCAMError) -> (ConvLayer, ConvLayer) in
            (ConvLayer(shape: stemShape, weight: try FloatBuffer(copying: weight), bias: nil),
             try ConvLayer.folding(shape: stemShape, weight: weight, batchNorm: stemNorm))
        }
        append(ConvNode(conv: stemConv), name: "conv1")
        append(try ChannelAffineNode(batchNorm: stemNorm), name: "bn1")
        append(ReLUNode(), name: "relu")
        append(MaxPoolNode(kernel: 3, stride: 2, padding: 1), name: "maxpool")
        // Inference fuses conv1, bn1 and relu into one pass.
        let fusedStem = ConvNode(conv: fusedStemConv, appliesReLU: true)

        var inPlanes = config.stemWidth
        for stage in 0..<4 {
            for index in 0..<config.layers[stage] {
                let prefix = "layer\(stage + 1).\(index)"
                let stride = stage > 0 && index == 0 ? 2 : 1
                let block = try buildBlock(prefix: prefix, config: config, stage: stage, inPlanes: inPlanes, stride: stride, weights: weights)
                append(block, name: prefix)
                inPlanes = config.stageWidths[stage]
            }
            layers.append(NamedLayer(name: "layer\(stage + 1)", nodeIndex: nodes.count - 1))
        }
        append(GlobalAveragePoolNode(), name: "avgpool")
        let features = config.stageWidths[3]
        let fcWeight = try weights.withTensor("fc.weight", shape: [config.numClasses, features]) {
            (weight) throws(SwiftCAMError) -> FloatBuffer in try FloatBuffer(copying: weight)
        }
        let fcBias = try weights.read("fc.bias", shape: [config.numClasses])
        nodes.append(LinearNode(inFeatures: features, outFeatures: config.numClasses, weight: fcWeight, bias: try FloatBuffer(fcBias)))
        try weights.checkAllUsed()
        return Network(nodes: nodes, inferenceNodes: [fusedStem] + nodes.dropFirst(3), layers: layers, inputChannels: config.inputChannels, numClasses: config.numClasses,
                       architecture: config.torchvisionName ?? "resnet", configurationJSON: config.json)
    }

    private static func buildBlock(prefix: String, config: ResNetConfiguration, stage: Int, inPlanes: Int, stride: Int,
                                   weights: WeightReader) throws(SwiftCAMError) -> ResidualBlockNode {
        let planes = config.planes[stage]
        let outPlanes = config.stageWidths[stage]
        var branch: [ConvLayer] = []
        switch config.block {
        case .basic:
            branch.append(try foldedConv("\(prefix).conv1", "\(prefix).bn1", in: inPlanes, out: planes, kernel: 3, stride: stride, groups: 1, weights: weights))
            branch.append(try foldedConv("\(prefix).conv2", "\(prefix).bn2", in: planes, out: planes, kernel: 3, stride: 1, groups: 1, weights: weights))
        case .bottleneck:
            let width = config.innerWidths[stage]
            branch.append(try foldedConv("\(prefix).conv1", "\(prefix).bn1", in: inPlanes, out: width, kernel: 1, stride: 1, groups: 1, weights: weights))
            branch.append(try foldedConv("\(prefix).conv2", "\(prefix).bn2", in: width, out: width, kernel: 3, stride: stride, groups: config.groups, weights: weights))
            branch.append(try foldedConv("\(prefix).conv3", "\(prefix).bn3", in: width, out: outPlanes, kernel: 1, stride: 1, groups: 1, weights: weights))
        }
        var downsample: ConvLayer? = nil
        if stride != 1 || inPlanes != outPlanes {
            downsample = try foldedConv("\(prefix).downsample.0", "\(prefix).downsample.1", in: inPlanes, out: outPlanes, kernel: 1,
                                        stride: stride, groups: 1, weights: weights)
        }
        return ResidualBlockNode(branch: branch, downsample: downsample)
    }

    /// A bias-free convolution followed by batch norm, folded. Padding is kernel / 2 as in torchvision.
    private static func foldedConv(_ convName: String, _ bnName: String, in inChannels: Int, out outChannels: Int, kernel: Int,
                                   stride: Int, groups: Int, weights: WeightReader) throws(SwiftCAMError) -> ConvLayer {
        guard groups > 0, inChannels % groups == 0, outChannels % groups == 0 else {
            throw .unsupportedModel("'\(convName)': \(inChannels) -> \(outChannels) channels cannot be split into \(groups) groups")
        }
        let shape = Conv2dShape(inChannels: inChannels, outChannels: outChannels, kernelHeight: kernel, kernelWidth: kernel,
                                strideHeight: stride, strideWidth: stride, paddingHeight: kernel / 2, paddingWidth: kernel / 2,
                                groups: groups)
        let batchNorm = try readBatchNorm(bnName, channels: outChannels, from: weights)
        return try weights.withTensor("\(convName).weight", shape: [outChannels, inChannels / groups, kernel, kernel]) {
            (weight) throws(SwiftCAMError) -> ConvLayer in try ConvLayer.folding(shape: shape, weight: weight, batchNorm: batchNorm)
        }
    }

    private static func readBatchNorm(_ name: String, channels: Int, from weights: WeightReader) throws(SwiftCAMError) -> BatchNormParameters {
        BatchNormParameters(weight: try weights.read("\(name).weight", shape: [channels]),
                            bias: try weights.read("\(name).bias", shape: [channels]),
                            runningMean: try weights.read("\(name).running_mean", shape: [channels]),
                            runningVar: try weights.read("\(name).running_var", shape: [channels]))
    }
}
