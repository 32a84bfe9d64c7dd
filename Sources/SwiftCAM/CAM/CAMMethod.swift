// CAMMethod: the class-activation-map methods of the gradient family and how each turns one
// image's activations A (C, h, w) and gradients G (C, h, w) into a map (h, w), exactly as
// pytorch-grad-cam 1.5.7 does (see ../shared/REFERENCE.md): either channel weights w (C) applied
// as w * A, or an element-wise product, then summed over channels or (eigen_smooth) projected on
// the first principal component.

/// A CAM method. Raw values are the C ABI's SWIFTCAM_METHOD_* constants (append-only).
public enum CAMMethod: Int32, Sendable, CaseIterable {
    case gradCAM = 0
    case hiResCAM = 1
    case gradCAMElementWise = 2
    case gradCAMPlusPlus = 3
    case xGradCAM = 4
    case layerCAM = 5
    case eigenCAM = 6
    case eigenGradCAM = 7

    /// Whether the method needs gradients (all but EigenCAM).
    public var usesGradients: Bool { self != .eigenCAM }

    /// Whether the map is always the principal-component projection (the Eigen methods).
    public var alwaysProjects: Bool { self == .eigenCAM || self == .eigenGradCAM }

    /// Writes the method's weighted activations T (C, h, w) for one image, whose channel sum
    /// (or principal projection) is the map. `activations` and `gradients` are (C, h, w).
    func weightedActivations(into output: UnsafeMutablePointer<Float>, activations a: UnsafePointer<Float>,
                             gradients g: UnsafePointer<Float>?, channels: Int, plane: Int) {
        let count = channels * plane
        guard let g, usesGradients else {
            output.update(from: a, count: count)
            return
        }
        switch self {
        case .gradCAM, .gradCAMPlusPlus, .xGradCAM:
            for c in 0..<channels {
                let weight = channelWeight(activations: a + c * plane, gradients: g + c * plane, plane: plane)
                for i in c * plane..<(c + 1) * plane { output[i] = weight * a[i] }
            }
        case .hiResCAM, .eigenGradCAM:
            for i in 0..<count { output[i] = g[i] * a[i] }
        case .gradCAMElementWise:
            for i in 0..<count { output[i] = max(g[i] * a[i], 0) }
        case .layerCAM:
            for i in 0..<count { output[i] = max(g[i], 0) * a[i] }
        case .eigenCAM:
            output.update(from: a, count: count)
        }
    }

    /// The weight of one channel for the channel-weight methods; `a` and `g` are (h, w).
    private func channelWeight(activations a: UnsafePointer<Float>, gradients g: UnsafePointer<Float>, plane: Int) -> Float {
        switch self {
        case .gradCAMPlusPlus:
            // Chattopadhay et al., eq. 19, with the reference's eps and its zeroing where G == 0.
            let activationSum = spatialSum(a, plane)
            var weight: Float = 0
            for i in 0..<plane where g[i] != 0 {
                let g2 = g[i] * g[i]
                let g3 = g2 * g[i]
                let alpha = g2 / (2 * g2 + activationSum * g3 + 0.000001)
                weight += max(g[i], 0) * alpha
            }
            return weight
        case .xGradCAM:
            let activationSum = spatialSum(a, plane)
            var weight: Float = 0
            for i in 0..<plane { weight += g[i] * a[i] / (activationSum + 1e-7) }
            return weight
        default:
            return spatialSum(g, plane) / Float(plane)
        }
    }
}

/// Sum of `count` floats, accumulated in Double (the reference sums float32 pairwise; Double
/// keeps us within its rounding).
@inline(__always)
func spatialSum(_ values: UnsafePointer<Float>, _ count: Int) -> Float {
    var total: Double = 0
    for i in 0..<count { total += Double(values[i]) }
    return Float(total)
}
