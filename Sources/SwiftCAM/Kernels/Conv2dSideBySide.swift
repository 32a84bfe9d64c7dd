// Conv2dSideBySide: convolutions of several images in one GEMM. On small feature maps (the last
// stages of a ResNet: 14x14, 7x7) one image's product is narrow and packing the weights for it
// costs more than the product; putting the images' column matrices side by side packs the
// weights once per group of images. conv2dForward / conv2dBackwardInput call these when
// `Conv2dShape.imagesPerProduct` is above 1. Results equal the per-image path up to float
// rounding: each output element is the same dot product, but OpenBLAS's SkylakeX kernels may
// round a wider product differently (1 ulp).

/// Where the side-by-side kernels work: the shared column matrix and the product next to it.
struct SideBySideLayout {
    let shape: Conv2dShape
    let height: Int, width: Int
    let outputHeight: Int, outputWidth: Int
    /// The images of this product, as indices into the batch.
    let images: Range<Int>

    var inputPlane: Int { height * width }
    var outputPlane: Int { outputHeight * outputWidth }
    /// Columns of the column matrix and of the product: every image's output positions.
    var columns: Int { images.count * outputPlane }
    var groupInChannels: Int { shape.inChannels / shape.groups }
    var groupOutChannels: Int { shape.outChannels / shape.groups }
    /// Column-matrix rows per input channel (kh * kw).
    var rowsPerChannel: Int { shape.columnRows / groupInChannels }

    /// The groups of images of a batch that share a product, or none when images go one at a time
    /// (`Conv2dShape.imagesPerProduct` is 1).
    static func layouts(shape: Conv2dShape, height: Int, width: Int, batch: Int) -> [SideBySideLayout] {
        guard let (outputHeight, outputWidth) = shape.outputSize(height: height, width: width) else { return [] }
        let perProduct = shape.imagesPerProduct(batch: batch, outputHeight: outputHeight, outputWidth: outputWidth)
        guard perProduct > 1 else { return [] }
        return stride(from: 0, to: batch, by: perProduct).map { first in
            SideBySideLayout(shape: shape, height: height, width: width, outputHeight: outputHeight,
                             outputWidth: outputWidth, images: first..<min(first + perProduct, batch))
        }
    }

    /// Lays out `workspace` (`shape.workspaceCount(height:width:batch:)` floats): the column
    /// matrix, then the product / gathered gradient.
    func split(_ workspace: UnsafeMutablePointer<Float>) -> (columns: UnsafeMutablePointer<Float>, product: UnsafeMutablePointer<Float>) {
        (workspace, workspace + shape.columnRows * columns)  // (columnRows, columns), (Cout/g, columns)
    }
}

/// `conv2dForward` for the images `layout.images`, through one GEMM per group.
func conv2dForwardSideBySide(
    output: UnsafeMutablePointer<Float>,  // (N, Cout, Ho, Wo)
    input: UnsafePointer<Float>,  // (N, Cin, H, W)
    product multiplication: ConvolutionProduct,
    bias: UnsafePointer<Float>?,  // (Cout)
    residual: UnsafePointer<Float>?,  // (N, Cout, Ho, Wo)
    layout: SideBySideLayout, applyReLU: Bool,
    workspace: UnsafeMutablePointer<Float>
) {
    let shape = layout.shape
    let (columns, product) = layout.split(workspace)  // (columnRows, n), (Cout/g, n) with n = layout.columns
    let n = layout.columns, plane = layout.outputPlane
    for group in 0..<shape.groups {
        // Each image's column matrix, side by side.
        forEachRange(of: layout.groupInChannels, costPerItem: layout.rowsPerChannel * n) { channels in
            for (slot, image) in layout.images.enumerated() {
                let groupInput = input + (image * shape.inChannels + group * layout.groupInChannels) * layout.inputPlane  // (Cin/g, H, W)
                let destination = columns + channels.lowerBound * layout.rowsPerChannel * n + slot * plane
                if shape.isPointwise {
                    for (row, channel) in channels.enumerated() {
                        (destination + row * n).update(from: groupInput + channel * layout.inputPlane, count: plane)
                    }
                } else {
                    im2col(columns: destination, image: groupInput + channels.lowerBound * layout.inputPlane,
                           channels: channels.count, height: layout.height, width: layout.width,
                           outputHeight: layout.outputHeight, outputWidth: layout.outputWidth,
                           band: 0..<layout.outputHeight, shape: shape, rowStride: n)
                }
            }
        }
        // (Cout/g, n) = (Cout/g, Cin/g*kh*kw) · (Cin/g*kh*kw, n)
        multiplication.multiply(group: group, n: n, b: columns, ldb: n, c: product, ldc: n)
        // Back to each image's planes, with bias, shortcut and ReLU.
        forEachRange(of: layout.groupOutChannels, costPerItem: n) { channels in
            let outputChannels = group * layout.groupOutChannels + channels.lowerBound
                ..< group * layout.groupOutChannels + channels.upperBound
            for (slot, image) in layout.images.enumerated() {
                let imageOutput = output + image * shape.outChannels * plane  // (Cout, Ho, Wo)
                for (channel, outputChannel) in zip(channels, outputChannels) {
                    (imageOutput + outputChannel * plane).update(from: product + channel * n + slot * plane, count: plane)
                }
                convolutionEpilogue(imageOutput, channels: outputChannels, spatial: plane, bias: bias,
                                    residual: residual.map { $0 + image * shape.outChannels * plane },
                                    applyReLU: applyReLU)
            }
        }
    }
}

/// `conv2dBackwardInput` for the images `layout.images`, through one GEMM per group. Overwrites
/// those images' input gradients.
func conv2dBackwardInputSideBySide(
    inputGradient: UnsafeMutablePointer<Float>,  // (N, Cin, H, W)
    outputGradient: UnsafePointer<Float>,  // (N, Cout, Ho, Wo)
    weight: UnsafePointer<Float>,  // (Cout, Cin / groups, kh, kw)
    layout: SideBySideLayout,
    workspace: UnsafeMutablePointer<Float>
) {
    let shape = layout.shape
    let (columns, gathered) = layout.split(workspace)  // (columnRows, n), (Cout/g, n) with n = layout.columns
    let n = layout.columns, plane = layout.outputPlane
    if !shape.isPointwise {
        let first = inputGradient + layout.images.lowerBound * shape.inChannels * layout.inputPlane
        first.update(repeating: 0, count: layout.images.count * shape.inChannels * layout.inputPlane)
    }
    for group in 0..<shape.groups {
        // The images' output gradients side by side.
        forEachRange(of: layout.groupOutChannels, costPerItem: n) { channels in
            for (slot, image) in layout.images.enumerated() {
                let source = outputGradient + (image * shape.outChannels + group * layout.groupOutChannels) * plane  // (Cout/g, Ho*Wo)
                for channel in channels {
                    (gathered + channel * n + slot * plane).update(from: source + channel * plane, count: plane)
                }
            }
        }
        // (Cin/g*kh*kw, n) = (Cout/g, Cin/g*kh*kw)ᵀ · (Cout/g, n)
        parallelSgemm(
            transposeA: true, m: shape.columnRows, n: n, k: layout.groupOutChannels,
            a: weight + group * layout.groupOutChannels * shape.columnRows, lda: shape.columnRows,
            b: gathered, ldb: n, beta: 0, c: columns, ldc: n)
        // Folded back onto each image.
        forEachRange(of: layout.groupInChannels, costPerItem: layout.rowsPerChannel * n) { channels in
            for (slot, image) in layout.images.enumerated() {
                let groupGradient = inputGradient + (image * shape.inChannels + group * layout.groupInChannels) * layout.inputPlane  // (Cin/g, H, W)
                let source = columns + channels.lowerBound * layout.rowsPerChannel * n + slot * plane
                if shape.isPointwise {
                    for (row, channel) in channels.enumerated() {
                        (groupGradient + channel * layout.inputPlane).update(from: source + row * n, count: plane)
                    }
                } else {
                    col2im(image: groupGradient + channels.lowerBound * layout.inputPlane, columns: source,
                           channels: channels.count, height: layout.height, width: layout.width,
                           outputHeight: layout.outputHeight, outputWidth: layout.outputWidth,
                           band: 0..<layout.outputHeight, shape: shape, rowStride: n)
                }
            }
        }
    }
}
