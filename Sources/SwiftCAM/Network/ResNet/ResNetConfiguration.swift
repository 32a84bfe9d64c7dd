// ResNetConfiguration: a torchvision ResNet's layout, inferred from the names and shapes of its
// state-dict tensors (block type, blocks per stage, widths, groups, classes), so that any
// torchvision ResNet, ResNeXt or Wide ResNet, fine-tuned to any number of classes, loads without
// naming its architecture. Standard strides are assumed (replace_stride_with_dilation cannot be
// seen in the weights).

/// The layout of a torchvision-style ResNet.
public struct ResNetConfiguration: Equatable, Sendable {
    public enum Block: String, Sendable { case basic, bottleneck }

    public var block: Block
    /// Blocks per stage, e.g. [3, 4, 6, 3].
    public var layers: [Int]
    public var inputChannels: Int
    public var stemWidth: Int
    /// torchvision's `planes` per stage (output channels / expansion).
    public var planes: [Int]
    /// Inner width of the grouped 3x3 conv per stage (Bottleneck); equals planes for BasicBlock.
    public var innerWidths: [Int]
    public var groups: Int
    public var numClasses: Int

    public var expansion: Int { block == .basic ? 1 : 4 }
    public var stageWidths: [Int] { planes.map { $0 * expansion } }
    /// torchvision's `width_per_group` (64 for plain ResNets, 128 for Wide ResNets).
    public var widthPerGroup: Int { planes[0] == 0 ? 0 : innerWidths[0] / groups * 64 / planes[0] }

    /// Infers the layout from tensor names and shapes. Shapes are checked fully by the builder.
    public static func infer(from weights: WeightReader) throws(SwiftCAMError) -> ResNetConfiguration {
        guard weights.contains("conv1.weight"), weights.contains("layer1.0.conv1.weight"), weights.contains("fc.weight") else {
            throw .unsupportedModel("the weights are not a torchvision ResNet state dict: expected tensors such as 'conv1.weight', 'layer1.0.conv1.weight' and 'fc.weight'")
        }
        let stem = try weights.shape(of: "conv1.weight")
        guard stem.count == 4, stem[2] == 7, stem[3] == 7, stem[0] > 0, stem[1] > 0 else {
            throw .unsupportedModel("'conv1.weight' has shape \(stem); a ResNet stem is (width, channels, 7, 7)")
        }
        let block: Block = weights.contains("layer1.0.conv3.weight") ? .bottleneck : .basic
        var layers: [Int] = []
        var planes: [Int] = []
        var innerWidths: [Int] = []
        for stage in 1...4 {
            var count = 0
            while weights.contains("layer\(stage).\(count).conv1.weight") { count += 1 }
            guard count > 0 else {
                throw .unsupportedModel("the weights have no 'layer\(stage).0.conv1.weight': a ResNet has four stages, layer1 to layer4")
            }
            layers.append(count)
            let first = "layer\(stage).0"
            let inner = try weights.shape(of: "\(first).conv1.weight")
            guard inner.count == 4, inner[0] > 0 else {
                throw .weightError("tensor '\(first).conv1.weight' has shape \(inner), expected a 4-D convolution weight")
            }
            innerWidths.append(inner[0])
            if block == .bottleneck {
                let out = try weights.shape(of: "\(first).conv3.weight")
                guard out.count == 4, out[0] > 0, out[0] % 4 == 0 else {
                    throw .weightError("tensor '\(first).conv3.weight' has shape \(out), expected (4 * planes, width, 1, 1)")
                }
                planes.append(out[0] / 4)
            } else {
                planes.append(inner[0])
            }
        }
        var groups = 1
        if block == .bottleneck {
            let grouped = try weights.shape(of: "layer1.0.conv2.weight")
            guard grouped.count == 4, grouped[1] > 0, innerWidths[0] % grouped[1] == 0 else {
                throw .weightError("tensor 'layer1.0.conv2.weight' has shape \(grouped), expected (width, width / groups, 3, 3)")
            }
            groups = innerWidths[0] / grouped[1]
        }
        let classifier = try weights.shape(of: "fc.weight")
        guard classifier.count == 2, classifier[0] > 0 else {
            throw .weightError("tensor 'fc.weight' has shape \(classifier), expected (classes, features)")
        }
        return ResNetConfiguration(block: block, layers: layers, inputChannels: stem[1], stemWidth: stem[0], planes: planes,
                                   innerWidths: innerWidths, groups: groups, numClasses: classifier[0])
    }

    /// torchvision's name for this layout, or nil.
    public var torchvisionName: String? {
        guard stemWidth == 64, planes == [64, 128, 256, 512], inputChannels == 3 else { return nil }
        let key = "\(block.rawValue) \(layers) \(groups) \(widthPerGroup)"
        let names: [String: String] = [
            "basic [2, 2, 2, 2] 1 64": "resnet18",
            "basic [3, 4, 6, 3] 1 64": "resnet34",
            "bottleneck [3, 4, 6, 3] 1 64": "resnet50",
            "bottleneck [3, 4, 23, 3] 1 64": "resnet101",
            "bottleneck [3, 8, 36, 3] 1 64": "resnet152",
            "bottleneck [3, 4, 6, 3] 1 128": "wide_resnet50_2",
            "bottleneck [3, 4, 23, 3] 1 128": "wide_resnet101_2",
            "bottleneck [3, 4, 6, 3] 32 4": "resnext50_32x4d",
            "bottleneck [3, 4, 23, 3] 32 8": "resnext101_32x8d",
            "bottleneck [3, 4, 23, 3] 64 4": "resnext101_64x4d",
        ]
        return names[key]
    }

    /// The layout as a JSON object (for bindings: `model.config` in Python).
    public var json: String {
        func list(_ values: [Int]) -> String { "[" + values.map(String.init).joined(separator: ", ") + "]" }
        return """
        {"family": "resnet", "block": "\(block.rawValue)", "layers": \(list(layers)), "widths": \(list(stageWidths)), \
        "groups": \(groups), "width_per_group": \(widthPerGroup), "num_classes": \(numClasses), \
        "stem_width": \(stemWidth), "input_channels": \(inputChannels)}
        """
    }
}
